//! `sysinstall partition` through the binary: argument checks, the
//! confirmation rule, and refusals before any write (exit codes 2 and 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{output, sha256_file, sparse_image, stderr, sysinstall};

fn image(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let img = dir.path().join("disk.img");
    sparse_image(&img, 64 << 20);
    img
}

#[test]
fn layout_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(&dir);
    let o = output(
        sysinstall()
            .args(["partition", "--yes", "--device"])
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--layout FILE"), "{}", stderr(&o));
}

#[test]
fn no_terminal_and_no_yes_is_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(&dir);
    let before = sha256_file(&img);
    // stdin is /dev/null, not a terminal.
    let o = output(
        sysinstall()
            .args(["partition", "--layout", "whatever.xml", "--device"])
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("without confirmation"), "{e}");
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert_eq!(sha256_file(&img), before);
}

#[test]
fn a_missing_device_is_named() {
    let o = output(sysinstall().args([
        "partition",
        "--yes",
        "--layout",
        "x.xml",
        "--device",
        "/nonexistent/disk",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("opening /nonexistent/disk"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreadable_layout_is_named_and_the_image_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(&dir);
    let before = sha256_file(&img);
    let o = output(
        sysinstall()
            .args([
                "partition",
                "--yes",
                "--layout",
                "/nonexistent/flash.xml",
                "--device",
            ])
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/flash.xml"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sha256_file(&img), before);
}

#[test]
fn a_malformed_set_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(&dir);
    let o = output(
        sysinstall()
            .args([
                "partition",
                "--dry-run",
                "--layout",
                "x.xml",
                "--set",
                "APPSIZE",
            ])
            .arg("--device")
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--set 'APPSIZE': expected NAME=VALUE"),
        "{}",
        stderr(&o)
    );
}
