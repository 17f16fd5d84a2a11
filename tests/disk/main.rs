//! Disk: GPT writing and reading on images and loop devices, `partition` and `plan` from the CLI, probing real filesystems, hostile tables.
//!
//! One test binary per subsystem (`src/disk` ↔ `tests/disk/`); the helpers are
//! in `tests/support/`. Tiers: see `tests/support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod hostile;
mod image;
mod loop_device;
mod partition_cli;
mod partition_loop;
mod plan_cli;
mod probe;
