//! `sysinstall plan` through the binary: read-only, exit 1 on bad input.

use crate::support::{output, stderr, sysinstall};

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
    crate::support::sparse_image(&img, 1 << 20);
    let o = output(sysinstall().args(["plan", "--device"]).arg(&img));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

use crate::support::{data_dir, require_tools, sparse_image, stdout};
use std::path::Path;

fn plan_json(layout: &Path, sets: &[&str], dev: &Path) -> serde_json::Value {
    let mut c = sysinstall();
    c.args(["plan", "--format", "json", "--layout"]).arg(layout);
    for s in sets {
        c.args(["--set", s]);
    }
    let o = output(c.arg("--device").arg(dev));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn entry<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:#}"))
}

#[test]
fn a_blank_disk_creates_everything() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, 4 << 30);
    let demo = crate::support::repo().join("layouts/demo.xml");
    let v = plan_json(&demo, &[], &img);
    assert_eq!(v["device"], img.display().to_string());
    assert_eq!(v["in_place"], false);
    assert_eq!(v["current"]["state"], "none");
    assert_eq!(v["disk_content"]["type"], "empty");
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 32);
    assert!(parts
        .iter()
        .all(|p| p["action"] == "create" && p["data_lost"] == false));

    let o = output(
        sysinstall()
            .args(["plan", "--layout"])
            .arg(&demo)
            .arg("--device")
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("Current table: none (the disk starts with: empty)"));
    assert!(stdout(&o).contains("32 partitions change; no data is lost."));
}

#[test]
fn a_bigger_app_moves_what_follows_and_names_the_filesystems_lost() {
    let data = data_dir();
    require_tools(&["mke2fs"]);
    let xml = data.join("flash-layouts/r32.5.0-testdistro-flash_jetson-tx2-devkit_custom.xml");
    let sets = ["LNXSIZE=83886080", "RECROOTFSSIZE=314572800"];
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, 61071360 * 512);
    let six = [&sets[..], &["APPSIZE=6442450944"]].concat();
    let o = output(
        sysinstall()
            .args(["partition", "--yes", "--layout"])
            .arg(&xml)
            .args(six.iter().flat_map(|s| ["--set", s]))
            .arg("--device")
            .arg(&img),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A real ext4 in DATA (16 MiB at sector 26861976), made without root.
    let o = output(
        std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "DATA", "-E"])
            .arg(format!("offset={}", 26861976u64 * 512))
            .arg(&img)
            .arg("16M"),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let v = plan_json(&xml, &[&sets[..], &["APPSIZE=7516192768"]].concat(), &img);
    assert_eq!(v["in_place"], false);
    let app = entry(&v, "APP");
    assert_eq!(app["action"], "resize");
    assert_eq!(app["data_lost"], false, "APP grows and is empty");
    let data = entry(&v, "DATA");
    assert_eq!(data["action"], "move");
    assert_eq!(data["data_lost"], true);
    assert_eq!(data["content"]["kind"], "ext4");
    assert_eq!(data["content"]["label"], "DATA");
    assert_eq!(entry(&v, "APP_b")["action"], "move");
    assert_eq!(entry(&v, "mts-bootpack")["action"], "keep");
    let lost: Vec<_> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["data_lost"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(lost, ["DATA"]);

    // The unchanged layout is in place, DATA's filesystem notwithstanding.
    assert_eq!(plan_json(&xml, &six, &img)["in_place"], true);
}
