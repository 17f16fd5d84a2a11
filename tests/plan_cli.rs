//! `sysinstall plan` through the binary: read-only, exit 1 on bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{output, stderr, sysinstall};

#[test]
fn a_missing_device_fails_the_check() {
    let o =
        output(sysinstall().args(["plan", "--layout", "x.xml", "--device", "/nonexistent/disk"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("opening /nonexistent/disk"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn layout_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    common::sparse_image(&img, 1 << 20);
    let o = output(sysinstall().args(["plan", "--device"]).arg(&img));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
