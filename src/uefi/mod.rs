//! UEFI on Orin (T234): how the boot firmware is updated and the boot chain
//! switched from Linux (docs: t234-boot-chain.md).
//!
//! On T234 nothing writes the QSPI from Linux: the firmware updates its
//! inactive chain from a capsule staged in the ESP and requested through
//! `OsIndications`, and switches chains through `BootChainFwNext`. So an
//! install is: check the capsule and the firmware state before anything is
//! written, write the user device, stage the capsule, then set the
//! variables in a fixed order. These modules are the pieces:
//!
//! ```text
//!  capsule ─────────▶ image type, versions, where the BUP is ──▶ bup::t234
//!  esrt + vars ─────▶ FirmwareState (running version, LSV, chains, statuses)
//!  preflight ───────▶ refuse before any write, with what to do instead
//!  varplan ─────────▶ the ordered variable operations; apply() one at a time
//!  status ──────────▶ after the reboot: applied? to which chain? second pass?
//! ```
//!
//! All pure: bytes and text in, values out. [`crate::sys::efivarfs`],
//! [`crate::sys::esrt`] and [`crate::sys::vfat`] are the thin layer that reads
//! and writes the system.

pub mod capsule;
pub mod esrt;
pub mod preflight;
pub mod status;
pub mod varplan;
pub mod vars;
pub mod version;
