//! Rootfs: sources (file, http, stdin; TLS, credentials, proxies, OCI registries), the scan, unpacking against GNU tar, hostile archives, mkfs and data.
//!
//! One test binary per subsystem (`src/rootfs` ↔ `tests/rootfs/`); the helpers are
//! in `tests/support/`. Tiers: see `tests/support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod data;
mod gnu_compat;
mod http;
mod malicious;
mod mkfs;
mod net;
mod scan;
mod sources;
mod tftp;
