//! `sysinstall partition` through the binary: argument checks, the
//! confirmation rule, and refusals before any write (exit codes 2 and 3).

use crate::support::{output, sparse_image, stderr, sysinstall};

fn image(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let img = dir.path().join("disk.img");
    sparse_image(&img, 4 << 30);
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
    let before = fingerprint(&img);
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
    assert_eq!(fingerprint(&img), before);
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
    let before = fingerprint(&img);
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
    assert_eq!(fingerprint(&img), before);
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

use crate::support::disk::{assert_sgdisk_agrees, expected_table, fingerprint};
use crate::support::{data_dir, require_tools, stdout};
use std::path::{Path, PathBuf};

/// The `--set` values an expected file states on its substitution line
/// ("APPSIZE=ROOTFSPART_SIZE=6442450944" means APPSIZE=6442450944).
fn expected_sets(expected: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(expected).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("# substitutions:"))
        .unwrap();
    let assign = line
        .trim_start_matches("# substitutions:")
        .split(';')
        .next()
        .unwrap();
    assign
        .split_whitespace()
        .map(|kv| {
            format!(
                "{}={}",
                kv.split('=').next().unwrap(),
                kv.rsplit('=').next().unwrap()
            )
        })
        .collect()
}

fn partition_cmd(layout: &Path, sets: &[String], dev: &Path) -> std::process::Command {
    let mut c = sysinstall();
    c.arg("partition").arg("--layout").arg(layout);
    for s in sets {
        c.arg("--set").arg(s);
    }
    c.arg("--device").arg(dev);
    c
}

fn expected_files(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("flash-layouts/expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn the_four_nvidia_layouts_are_written_exactly() {
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    for expected in expected_files(&data) {
        let (table, rows) = expected_table(&expected);
        let stem = expected.file_stem().unwrap().to_string_lossy().into_owned();
        let xml = data.join("flash-layouts").join(format!("{stem}.xml"));
        let sets = expected_sets(&expected);
        let img = dir.path().join("disk.img");
        sparse_image(&img, table.disk_sectors * 512);

        let o = output(partition_cmd(&xml, &sets, &img).arg("--yes"));
        assert_eq!(o.status.code(), Some(0), "{stem}: {}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!(
                "Wrote and verified the GPT on {}: {} partitions.",
                img.display(),
                rows.len()
            )),
            "{}",
            stdout(&o)
        );
        assert_sgdisk_agrees(&img, &rows, table.first_usable_lba, table.disk_sectors);

        // The same layout is now in place.
        let mut plan = sysinstall();
        plan.args(["plan", "--format", "json", "--layout"])
            .arg(&xml);
        for s in &sets {
            plan.arg("--set").arg(s);
        }
        let o = output(plan.arg("--device").arg(&img));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["in_place"], true, "{stem}: {v:#}");
        std::fs::remove_file(&img).unwrap();
    }
}

fn demo() -> PathBuf {
    crate::support::repo().join("layouts/demo.xml")
}

#[test]
fn dry_run_prints_the_table_and_every_write_and_changes_nothing() {
    require_tools(&["sgdisk"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    // A table made by sgdisk for a 2 GiB disk, then the image grows to 4 GiB.
    sparse_image(&img, 2 << 30);
    let o = output(
        std::process::Command::new("sgdisk")
            .args(["-o", "-n", "1:2048:+64M", "-c", "1:APP"])
            .arg(&img),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let before = fingerprint(&img);

    let o = output(partition_cmd(&demo(), &[], &img).arg("--dry-run"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fingerprint(&img), before, "a dry run writes nothing");
    let out = stdout(&o);
    for want in [
        "Dry run: nothing is written to",
        "First usable sector is 34, last usable sector is 8388574",
        "     1          439704         2536855  1024.0 MiB  0700",
        "protective MBR, boot-code area kept (replaces the old one)",
        "LBA 8388575..8388606",
        "zap (zeros): stale backup GPT header of a 4194304-sector disk",
        "LBA 4194303 ",
        "LBA 1 ",
        "move         1  APP ",
        "empty  none (now 2048..133119; type 0FC63DAF-8483-4772-8E79-3D69D8477DE4 → EBD0A0A2",
        "Table: last usable LBA is 4194270, should be 8388574",
        "32 partitions change; no data is lost.",
    ] {
        assert!(out.contains(want), "dry run lacks '{want}':\n{out}");
    }
}

#[test]
fn the_terminal_prompt_declines_or_writes() {
    require_tools(&["script"]);
    let dir = tempfile::tempdir().unwrap();
    let img = image(&dir);
    let run = |answer: &str| {
        let cmd = format!(
            "{} partition --layout {} --device {}",
            env!("CARGO_BIN_EXE_sysinstall"),
            demo().display(),
            img.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let before = fingerprint(&img);
    let o = run("n\n");
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(stdout(&o).contains("Write a new GPT to"), "{}", stdout(&o));
    assert_eq!(fingerprint(&img), before);
    let o = run("y\n");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_ne!(fingerprint(&img), before);
}
