//! Boot partitions: `bup list|check|write` from the CLI and the library, per SoC, on image files and loop devices.
//!
//! One test binary per subsystem (`src/bup` ↔ `tests/bup/`); the helpers are
//! in `tests/support/`. Tiers: see `tests/support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod layout;
mod loop_device;
mod mkbup;
mod t186;
mod t194;
mod t210;
