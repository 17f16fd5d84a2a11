//! `sysinstall`: re-lay-out and re-install an NVIDIA Jetson's eMMC in place,
//! from an initramfs, without a USB flashing host.
//!
//! # The pipeline
//!
//! ```text
//!  layout XML/CSV ──layout──▶ PartitionTable ──repartition──▶ what changes on the disk
//!                                   │
//!  payload (BUP) ──bup──▶ entries for this board (TNSPEC) ──▶ boot write plan
//!                                   │
//!  preflight: every input parsed and checked, nothing written yet
//!                                   │
//!  gpt ▶ LUKS2 (crypt-) ▶ mkfs ▶ rootfs (one stream, both slots) ▶ data ▶ boot partitions ▶ slot metadata
//! ```
//!
//! Everything left of the last line is pure: it takes bytes, text or
//! `Read + Write + Seek` and never opens `/dev`. The last line is carried out
//! by [`install`], which alone calls into [`sys`], the thin layer that runs
//! commands, issues ioctls and mounts. Writes are ordered so that a power cut
//! leaves a board that either boots what it booted before, or on which running
//! `sysinstall` again finishes the job: the bootloader is switched only after
//! everything it will boot has been written and verified.
//!
//! # Modules
//!
//! * [`layout`]: flash-layout XML / partition_table CSV → [`layout::PartitionTable`].
//! * [`gpt`]: GPT bytes (protective MBR, primary and backup, NVIDIA's boot pseudo-GPT).
//! * [`repartition`]: current GPT vs. wanted table → keep/create/move/resize/delete.
//! * [`disk`]: partitioning a device: in-use refusals, zap + write, read-back,
//!   kernel update, partition nodes (the pure GPT code meets [`sys`] here).
//! * [`bup`]: bootloader update payloads, TNSPEC matching, boot-partition writing.
//! * [`rootfs`]: tarball sources, decompression, the tar reader, fan-out unpacking.
//! * [`image`]: partition images (raw or Android sparse) written into slots and read back.
//! * [`uefi`]: Orin (T234) boot firmware: capsules, UEFI variables, ESRT,
//!   the firmware preflight rules, the variable plan and `status`.
//! * [`install`]: the orchestration of a whole install, preflight to commit.
//! * [`events`] and [`progress`]: what the operator and automation see.
//! * [`sys`]: commands (mke2fs, cryptsetup, ...), ioctls, mounts, sysfs.
//! * [`exit`]: exit codes, the contract with scripts.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod bup;
pub mod bytes;
pub mod cli;
pub mod commands;
pub mod disk;
pub mod events;
pub mod exit;
pub mod failpoint;
pub mod gpt;
pub mod guid;
pub mod image;
pub mod install;
pub mod interrupt;
pub mod layout;
pub mod probe;
pub mod progress;
pub mod repartition;
pub mod rootfs;
pub mod sys;
pub mod uefi;
