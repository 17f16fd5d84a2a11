//! Bootloader update payloads (BUP): reading them, choosing the entries for
//! this board, and writing the boot partitions in a safe order.
//!
//! This is our own implementation of OE4T's `tegra-bootloader-update`
//! (docs: bup-format.md, "REF"), keeping its behaviour where it is right and
//! taking the document's recommendations ("REC") where REF is undefined or
//! unsafe. Every deliberate deviation is named in a comment or a test.
//!
//! ```text
//!  payload ──payload──▶ header + entries
//!  board   ──board────▶ TNSPEC ──tnspec──▶ selected entries (one per partition)
//!  devices ──device───▶ boot table (layout / bootgpt), user partitions, survey
//!                      └──plan──▶ WritePlan: every write, in order, validated
//!                                 └──exec──▶ compare, write, fsync, read back
//! ```
//!
//! All modules but [`exec`], [`device`] and [`session`] are pure: bytes and
//! text in, values out. [`session`] is the glue that opens devices through
//! [`crate::sys`]; the `bup` commands and the installer both use it.

pub mod board;
pub mod payload;
pub mod tnspec;
