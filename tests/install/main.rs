//! The install on loop devices: whole installs and updates, refusals, and power cuts at every phase.
//!
//! One test binary per subsystem (`src/install` ↔ `tests/install/`); the helpers are
//! in `tests/support/`. Tiers: see `tests/support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod bootinfo;
mod console;
mod disk_image;
mod golden;
mod images;
mod interrupt;
mod keep_data;
mod loop_device;
mod refusals;
mod report_file;
mod safety;
mod streams;
mod t234;
