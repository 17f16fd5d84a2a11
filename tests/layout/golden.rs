//! `sysinstall layout` against the tables NVIDIA's own generator built
//! (tests/data/flash-layouts/expected), every other sample layout, and the
//! project's own layouts/ with their committed goldens.

use crate::support::{data_dir, output, stderr, stdout, sysinstall};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One row of an expected `sgdisk --print` table.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    number: u64,
    start: u64,
    end: u64,
    code: String,
    name: String,
}

struct Expected {
    substitutions: Vec<(String, String)>,
    disk_sectors: u64,
    first_usable: u64,
    last_usable: u64,
    rows: Vec<Row>,
}

/// Reads an expected file: the substitution line, the header and the rows.
fn read_expected(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).unwrap();
    let subst_line = text
        .lines()
        .find(|l| l.starts_with("# substitutions:"))
        .expect("substitutions line");
    let (assign, size) = subst_line
        .trim_start_matches("# substitutions:")
        .split_once(';')
        .unwrap();
    // "APPSIZE=ROOTFSPART_SIZE=6442450944" means APPSIZE=6442450944.
    let substitutions = assign
        .split_whitespace()
        .map(|kv| {
            let key = kv.split('=').next().unwrap().to_owned();
            let value = kv.rsplit('=').next().unwrap().to_owned();
            (key, value)
        })
        .collect();
    let disk_sectors = size.rsplit(':').next().unwrap().trim().parse().unwrap();
    let usable = text
        .lines()
        .find(|l| l.starts_with("First usable sector is"))
        .unwrap();
    let nums: Vec<u64> = usable
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("Number  Start") {
            in_table = true;
            continue;
        }
        if in_table {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                break;
            }
            rows.push(Row {
                number: f[0].parse().unwrap(),
                start: f[1].parse().unwrap(),
                end: f[2].parse().unwrap(),
                code: f[5].to_owned(),
                name: f[6].to_owned(),
            });
        }
    }
    Expected {
        substitutions,
        disk_sectors,
        first_usable: nums[0],
        last_usable: nums[1],
        rows,
    }
}

/// Runs `sysinstall layout --format json` and returns the document.
fn layout_json(file: &Path, set: &[(String, String)], disk_sectors: Option<u64>) -> Value {
    let mut cmd = sysinstall();
    cmd.arg("layout").arg(file).args(["--format", "json"]);
    for (k, v) in set {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    if let Some(n) = disk_sectors {
        cmd.arg("--disk-sectors").arg(n.to_string());
    }
    let o = output(&mut cmd);
    assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn rows_of(doc: &Value) -> Vec<Row> {
    doc["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Row {
            number: p["number"].as_u64().unwrap(),
            start: p["start_lba"].as_u64().unwrap(),
            end: p["end_lba"].as_u64().unwrap(),
            code: match p["type_guid"].as_str().unwrap() {
                "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "0700".into(),
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EF00".into(),
                other => other.into(),
            },
            name: p["name"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// Checks one layout against one expected table, number for number.
fn check_against_expected(layout: &Path, expected: &Path) {
    let exp = read_expected(expected);
    let doc = layout_json(layout, &exp.substitutions, Some(exp.disk_sectors));
    assert_eq!(doc["sector_size"], 512);
    assert_eq!(doc["disk_sectors"], exp.disk_sectors);
    assert_eq!(
        doc["first_usable_lba"],
        exp.first_usable,
        "{}",
        layout.display()
    );
    // NVIDIA's header says N-33, sgdisk's N-34; we write N-34 (see gpt).
    let n = exp.disk_sectors;
    assert!(exp.last_usable == n - 33 || exp.last_usable == n - 34);
    assert_eq!(doc["last_usable_lba"], n - 34);
    let got = rows_of(&doc);
    assert_eq!(got.len(), exp.rows.len(), "{}", layout.display());
    for (g, e) in got.iter().zip(&exp.rows) {
        assert_eq!(g, e, "{} vs {}", layout.display(), expected.display());
    }
}

#[test]
fn reproduces_the_four_nvidia_tables() {
    let data = data_dir();
    let dir = data.join("flash-layouts");
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("expected")).unwrap().flatten() {
        let expected = e.path();
        let stem = expected.file_stem().unwrap().to_string_lossy().into_owned();
        check_against_expected(&dir.join(format!("{stem}.xml")), &expected);
        n += 1;
    }
    assert_eq!(n, 4);
}

/// The substitution values the samples were built with (flash-layouts/README).
fn sample_substitutions(file: &str) -> Vec<(String, String)> {
    let app = if file.contains("nano") || file.contains("tx1") {
        "4294967296"
    } else if file.contains("rootfs_ab") || file.contains("testdistro") {
        "6442450944"
    } else {
        "15032385536"
    };
    let mut v = vec![("APPSIZE".to_owned(), app.to_owned())];
    if file.contains("tx1") {
        v.push(("EFISIZE".into(), "67108864".into()));
    }
    if file.starts_with("r35") && file.contains("p3668") {
        // R35 pins the recovery partitions of the 16 GB NX eMMC near its end
        // (start_location 0x38CA00000); the 300 MiB default recovery rootfs
        // does not fit after them (and is refused), the 100 MiB NX one does.
        v.push(("RECROOTFSSIZE".into(), "104857600".into()));
    }
    v
}

fn board_sectors(file: &str) -> u64 {
    if file.contains("t234") {
        124321792
    } else if file.contains("p3668")
        || file.contains("xavier-nx")
        || file.contains("nano")
        || file.contains("tx1")
    {
        30777344
    } else if file.contains("t194") || file.contains("xavier") || file.contains("jaxi") {
        61079552
    } else {
        61071360
    }
}

/// Invariants every placed table must satisfy.
fn check_invariants(doc: &Value, what: &str) {
    let first = doc["first_usable_lba"].as_u64().unwrap();
    let last = doc["last_usable_lba"].as_u64().unwrap();
    assert_eq!(last, doc["disk_sectors"].as_u64().unwrap() - 34, "{what}");
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let mut numbers = std::collections::BTreeSet::new();
    for p in doc["partitions"].as_array().unwrap() {
        let (s, e) = (
            p["start_lba"].as_u64().unwrap(),
            p["end_lba"].as_u64().unwrap(),
        );
        let name = p["name"].as_str().unwrap().to_owned();
        assert!(first <= s && s <= e && e <= last, "{what}: {name} {s}..{e}");
        assert!(
            numbers.insert(p["number"].as_u64().unwrap()),
            "{what}: {name}"
        );
        assert!(name.encode_utf16().count() <= 36);
        assert!(
            !name.chars().any(|c| c.is_ascii_uppercase()) || !name.ends_with("NAME"),
            "{what}: {name}"
        );
        spans.push((s, e, name));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 < w[1].0, "{what}: {} overlaps {}", w[0].2, w[1].2);
    }
}

#[test]
fn every_sample_layout_follows_the_rules() {
    let data = data_dir();
    let dir = data.join("flash-layouts");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = e.path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().map_or(true, |x| x != "xml") {
            continue;
        }
        let doc = layout_json(
            &path,
            &sample_substitutions(&file),
            Some(board_sectors(&file)),
        );
        check_invariants(&doc, &file);
        checked += 1;
    }
    assert_eq!(checked, 19);
}

#[test]
fn documented_positions_of_stock_layouts() {
    // docs/spec/flash-layout.md §4.3 (NVIDIA's tool on the stock layouts).
    let data = data_dir();
    let dir = data.join("flash-layouts");
    let get = |doc: &Value, name: &str| -> (u64, u64, u64) {
        let p = doc["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone();
        (
            p["number"].as_u64().unwrap(),
            p["start_lba"].as_u64().unwrap(),
            p["end_lba"].as_u64().unwrap(),
        )
    };
    let set = |app: &str| vec![("APPSIZE".to_owned(), app.to_owned())];
    // Stock TX2, APP 28 GiB, PPTSIZE 2097152: first usable 4097, APP 4104-58724359 p1, UDA p33 ends at N-34.
    let doc = layout_json(
        &dir.join("r32.7.2-flash_l4t_t186.xml"),
        &set("30064771072"),
        Some(61071360),
    );
    assert_eq!(doc["first_usable_lba"], 4097);
    assert_eq!(get(&doc, "APP"), (1, 4104, 58724359));
    assert_eq!(get(&doc, "mts-bootpack").1, 58724360);
    assert_eq!(get(&doc, "UDA"), (33, 60420472, 61071326));
    // Same XML with PPTSIZE 16896 and APP of 25376768 sectors (PR #113): APP 40-25376807.
    let mut s = set(&(25376768u64 * 512).to_string());
    s.push(("PPTSIZE".into(), "16896".into()));
    let doc = layout_json(&dir.join("r32.7.2-flash_l4t_t186.xml"), &s, Some(61071360));
    assert_eq!(get(&doc, "APP"), (1, 40, 25376807));
    // AGX Xavier custom with an odd APPSIZE: DATA unaligned, EXTRA aligned (§2.2, §3.6.1).
    let doc = layout_json(
        &dir.join("r32.5.0-testdistro-flash_jetson-agx-xavier-devkit_custom.xml"),
        &set("644250944"),
        Some(61079552),
    );
    assert_eq!(get(&doc, "APP").1, 1694384);
    assert_eq!(get(&doc, "APP").2, 2952686);
    assert_eq!(get(&doc, "APP_b").1, 2952688);
    assert_eq!(get(&doc, "DATA").1, 4210991);
    assert_eq!(get(&doc, "EXTRA").1, 4374832);
    // Xavier NX eMMC stock: APP 40-29360167, UDA 30369576-30777310.
    let doc = layout_json(
        &dir.join("r32.7.2-flash_l4t_t194_spi_emmc_p3668.xml"),
        &set("15032385536"),
        Some(30777344),
    );
    assert_eq!(get(&doc, "APP"), (1, 40, 29360167));
    assert_eq!(
        (get(&doc, "UDA").1, get(&doc, "UDA").2),
        (30369576, 30777310)
    );
    // A/B overflow is reported the way NVIDIA words it, with the partition named.
    let mut cmd = sysinstall();
    cmd.arg("layout")
        .arg(dir.join("r32.7.2-flash_t194_sdmmc_rootfs_ab.xml"))
        .args(["--set", "APPSIZE=15032385536", "--disk-sectors", "30777344"]);
    let o = output(&mut cmd);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("partition 'APP_b': ends at sector"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn csv_output_matches_the_recipe_format() {
    // docs/spec/flash-layout.md §4.1: the partition_table the recipe generates for the
    // test-distro TX2 layout (rows in physical order, REMAIN for the fill).
    let data = data_dir();
    let path = data.join("flash-layouts/r32.5.0-testdistro-flash_jetson-tx2-devkit_custom.xml");
    let o = output(sysinstall().arg("layout").arg(&path).args([
        "--set",
        "APPSIZE=6442450944",
        "--format",
        "csv",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert_eq!(rows.len(), 36);
    assert_eq!(rows[0], "6,mts-bootpack,8192,,,,40");
    assert_eq!(rows[16], "22,sce-fw_b,4096,,,,63896");
    assert_eq!(rows[30], "36,RECROOTFS,614400,,,,1081752");
    assert_eq!(rows[31], "1,APP,12582912,,,,1696152");
    assert_eq!(rows[35], "5,EXTRA,REMAIN,,,,27025816");
}

#[test]
fn csv_round_trip_gives_the_same_table() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    for (xml, app, n) in [
        ("r32.7.2-flash_t194_sdmmc.xml", "30064771072", 61079552u64),
        (
            "r35.3.1-flash_t234_qspi_sdmmc.xml",
            "30064771072",
            124321792,
        ),
        (
            "r32.5.0-testdistro-flash_jetson-nano-devkit-emmc_custom.xml",
            "4294967296",
            30777344,
        ),
    ] {
        let path = data.join("flash-layouts").join(xml);
        let set = vec![("APPSIZE".to_owned(), app.to_owned())];
        let from_xml = layout_json(&path, &set, Some(n));
        let o = output(sysinstall().arg("layout").arg(&path).args([
            "--set",
            &format!("APPSIZE={app}"),
            "--disk-sectors",
            &n.to_string(),
            "--format",
            "csv",
        ]));
        let csv = tmp.path().join(format!("{xml}.csv"));
        std::fs::write(&csv, o.stdout).unwrap();
        let from_csv = layout_json(&csv, &[], None);
        let mut a = from_xml.clone();
        a.as_object_mut().unwrap().remove("boot_device");
        assert_eq!(a, from_csv, "{xml}");
    }
}

#[test]
fn legacy_warrior_csvs_are_read() {
    let data = data_dir();
    let dir = data.join("flash-layouts");
    // The warrior TX2 file has a start only on its first row; with sgdisk's
    // "largest free block" rule it lands on the same sectors as NVIDIA's.
    let doc = layout_json(
        &dir.join("warrior-testdistro-jetson-tx2.partition_table"),
        &[],
        Some(61071360),
    );
    check_invariants(&doc, "warrior tx2");
    let p = doc["partitions"].as_array().unwrap();
    assert_eq!(
        p.iter().find(|p| p["name"] == "mts-bootpack").unwrap()["start_lba"],
        40
    );
    for f in [
        "warrior-testdistro-jetson-xavier.partition_table",
        "warrior-testdistro-jetson-nano.partition_table",
    ] {
        let doc = layout_json(&dir.join(f), &[], Some(61079552));
        check_invariants(&doc, f);
    }
}

#[test]
fn boot_area_matches_the_documented_boot_partitions_conf() {
    // docs/spec/bup-format.md §3.2: boot-partitions.conf computed for the stock TX2 layout.
    let data = data_dir();
    let o = output(
        sysinstall()
            .arg("layout")
            .arg(data.join("flash-layouts/r32.7.2-flash_l4t_t186.xml"))
            .args(["--set", "APPSIZE=30064771072", "--format", "boot-conf"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let want = "BCT:0:32768\nmb1:32768:262144\nmb1_b:294912:262144\nMB1_BCT:557056:65536\nMB1_BCT_b:622592:65536\ndram-ecc-fw:688128:55296\nbadpage-fw:743424:4608\nbadpage-fw_b:748032:4608\nspe-fw:752640:131072\nspe-fw_b:883712:131072\nmb2:1014784:262144\nmb2_b:1276928:262144\nmts-preboot:1539072:262144\nmts-preboot_b:1801216:262144\nSMD:2063360:4096\nSMD_b:2067456:4096\nUBENV:8224768:32768\nVER_b:8257536:32768\nVER:8323072:32768\n";
    assert_eq!(stdout(&o), want);
}

/// The project's own layouts: each has a committed golden table in
/// tests/golden/, and those that mirror a sample NVIDIA built a table for
/// must also equal that table. `SYSINSTALL_BLESS=1` rewrites the goldens.
#[test]
fn project_layouts_match_their_goldens() {
    let repo = crate::support::repo();
    let layouts = repo.join("layouts");
    let golden = repo.join("tests/golden");
    let bless = std::env::var_os("SYSINSTALL_BLESS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&layouts)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let o = output(sysinstall().arg("layout").arg(f).args(["--format", "json"]));
        assert!(o.status.success(), "{stem}: {}", stderr(&o));
        let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
        check_invariants(&doc, &stem);
        let gpath = golden.join(format!("{stem}.json"));
        let text = stdout(&o);
        if bless {
            std::fs::write(&gpath, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&gpath).unwrap_or_else(|e| {
                panic!("{}: {e} (run with SYSINSTALL_BLESS=1)", gpath.display())
            });
            assert_eq!(text, want, "{stem} differs from its golden");
        }
    }
}

/// The project's example layouts that mirror a layout NVIDIA built a table
/// for give that same table.
#[test]
fn project_layouts_equal_nvidia_tables() {
    let data = data_dir();
    let exp = data.join("flash-layouts/expected");
    let layouts = crate::support::repo().join("layouts");
    for (ours, theirs) in [
        (
            "jetson-tx2-devkit.xml",
            "r32.5.0-testdistro-flash_jetson-tx2-devkit_custom.txt",
        ),
        (
            "jetson-agx-xavier-devkit.xml",
            "r32.7.2-flash_t194_sdmmc.txt",
        ),
        (
            "jetson-agx-orin-devkit.xml",
            "r35.3.1-flash_t234_qspi_sdmmc.txt",
        ),
        (
            "jetson-nano-devkit-emmc.xml",
            "r32.5.0-testdistro-flash_jetson-nano-devkit-emmc_custom.txt",
        ),
    ] {
        check_against_expected(&layouts.join(ours), &exp.join(theirs));
    }
    // Xavier NX eMMC, stock R32.7.2 (docs/spec/flash-layout.md §4.3).
    let doc = layout_json(&layouts.join("jetson-xavier-nx-devkit-emmc.xml"), &[], None);
    let p = doc["partitions"].as_array().unwrap();
    let span = |n: &str| {
        let q = p.iter().find(|q| q["name"] == n).unwrap();
        (
            q["start_lba"].as_u64().unwrap(),
            q["end_lba"].as_u64().unwrap(),
        )
    };
    assert_eq!(span("APP"), (40, 29360167));
    assert_eq!(span("UDA"), (30369576, 30777310));
}

/// The project's Orin Nano NVMe layout (R36.2 as documented): the QSPI is
/// read as the boot device and never placed on the disk; the NVMe takes the
/// real disk's size; `partition` writes the NVMe's GPT and nothing of the
/// QSPI.
#[test]
fn orin_nano_nvme_layout_reads_the_qspi_and_writes_only_the_disk() {
    let xml = crate::support::repo().join("layouts/jetson-orin-nano-devkit-nvme.xml");
    // A 512 GB NVMe instead of the layout's 256 GB: the same places, more free space.
    let n = 1_000_215_216u64;
    let doc = layout_json(&xml, &[], Some(n));
    check_invariants(&doc, "orin nano nvme");
    assert_eq!(doc["disk_sectors"], n);
    let parts = doc["partitions"].as_array().unwrap();
    let find = |name: &str| parts.iter().find(|p| p["name"] == name).unwrap();
    assert_eq!(find("APP")["number"], 1);
    assert_eq!(find("A_kernel")["number"], 2);
    assert_eq!(find("A_kernel")["start_lba"], 40);
    assert_eq!(
        find("esp")["type_guid"],
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    );
    let app_start = find("APP")["start_lba"].as_u64().unwrap();
    assert_eq!(app_start * 512 % 16384, 0);
    assert!(parts
        .iter()
        .all(|p| p["start_lba"].as_u64().unwrap() <= app_start));
    let boot = &doc["boot_device"];
    assert_eq!(boot["kind"], "spi");
    assert_eq!(boot["num_sectors"], 131072);
    let boot_names: Vec<&str> = boot["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["BCT", "A_mb1", "B_pva-fw", "uefi_variables", "A_VER"] {
        assert!(boot_names.contains(&name), "{name}: {boot_names:?}");
        assert!(
            parts.iter().all(|p| p["name"] != name),
            "{name} on the disk"
        );
    }

    // Partitioned onto an image file standing in for the NVMe.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("nvme.img");
    let size = 64u64 << 30;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let o = output(
        sysinstall()
            .args(["partition", "--yes", "--layout"])
            .arg(&xml)
            .arg("--device")
            .arg(&img),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut f = std::fs::File::open(&img).unwrap();
    let gpt = sysinstall::gpt::read::read(&mut f, size / 512)
        .unwrap()
        .unwrap();
    assert_eq!(gpt.other_copy_problem, None);
    assert_eq!(gpt.header.last_usable_lba, size / 512 - 34);
    let names: Vec<&str> = gpt.entries.iter().map(|(_, e)| e.name.as_str()).collect();
    let want: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, want);
    let o = output(
        sysinstall()
            .args(["plan", "--format", "json", "--layout"])
            .arg(&xml)
            .arg("--device")
            .arg(&img),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["in_place"], true, "{v}");
}
