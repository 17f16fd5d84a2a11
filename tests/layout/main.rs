//! Layout engine: goldens for every layout we ship and every sample, and property tests.
//!
//! One test binary per subsystem (`src/layout` ↔ `tests/layout/`); the helpers are
//! in `tests/support/`. Tiers: see `tests/support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod golden;
mod props;
