//! The synthetic BUP generator (tests/fixtures/mkbup.py) used by the qemu tier
//! and the demo: its output is checked here against docs/spec/bup-format.md, decoded
//! independently of the generator, and (once `bup list` is implemented)
//! against sysinstall's own parser.

use std::path::Path;
use std::process::Command;

fn mkbup(args: &[&str], out: &Path) -> bool {
    crate::support::require_tools(&["python3"]);
    let mut py = Command::new("python3");
    let o = crate::support::output(
        py.arg(crate::support::repo().join("tests/fixtures/mkbup.py"))
            .args(args)
            .arg("-o")
            .arg(out),
    );
    assert!(
        o.status.success(),
        "mkbup.py: {}",
        crate::support::stderr(&o)
    );
    true
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// docs/spec/bup-format.md §6.1: the 312-byte example, byte for byte.
#[test]
fn mkbup_reproduces_the_documented_vector() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.bup");
    if !mkbup(&["--vector-6-1"], &out) {
        return;
    }
    let b = std::fs::read(&out).unwrap();
    assert_eq!(b.len(), 312);
    assert_eq!(&b[..16], b"NVIDIA__BLOB__V2");
    // version 0x01020621, blob 312, header 48, 2 entries, type 0, uncomp 312
    assert_eq!(
        [0x01020621, 312, 48, 2, 0, 312],
        [16, 20, 24, 28, 32, 36].map(|o| u32_at(&b, o))
    );
    assert_eq!(&b[40..48], &[0u8; 8], "accessory");
    // entry 0: mb2 at 0x120, 8 bytes; entry 1: BCT at 0x128 with its spec.
    assert_eq!(cstr(&b[48..88]), "mb2");
    assert_eq!([u32_at(&b, 88), u32_at(&b, 92)], [0x120, 8]);
    assert_eq!(cstr(&b[168..208]), "BCT");
    assert_eq!([u32_at(&b, 208), u32_at(&b, 212)], [0x128, 16]);
    assert_eq!(
        cstr(&b[224..288]),
        "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1"
    );
    assert_eq!(&b[0x120..0x128], b"MB2DATA!");
    assert_eq!(&b[0x128..], (0u8..16).collect::<Vec<_>>().as_slice());
}

/// A payload for the test layout: well-formed for any V2 reader, entries
/// contiguous and inside the file, each image no larger than its partition.
#[test]
fn mkbup_payload_for_a_layout_is_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.bup");
    let manifest = dir.path().join("p.json");
    let layout = crate::support::repo().join("tests/fixtures/layouts/tx2-mini.xml");
    let (l, m) = (layout.to_str().unwrap(), manifest.to_str().unwrap());
    if !mkbup(
        &["--layout", l, "--decoy-fab", "B00", "--manifest", m],
        &out,
    ) {
        return;
    }
    let b = std::fs::read(&out).unwrap();
    let header = u32_at(&b, 24) as usize;
    let count = u32_at(&b, 28) as usize;
    assert_eq!(header, 48);
    assert_eq!(u32_at(&b, 20) as usize, b.len(), "blob_size");
    let mut next = header + 120 * count;
    let mut names = Vec::new();
    for i in 0..count {
        let e = &b[header + 120 * i..header + 120 * (i + 1)];
        let (off, len) = (u32_at(e, 40) as usize, u32_at(e, 44) as usize);
        assert_eq!(off, next, "entry {i} is not contiguous");
        next += len;
        let op_mode = u32_at(e, 52);
        assert!(op_mode <= 2);
        names.push((cstr(&e[..40]), op_mode, cstr(&e[56..120])));
    }
    assert_eq!(next, b.len(), "data ends at the end of the file");
    // T186 content: op_mode pairs for mb1, a decoy spec for every spec entry.
    assert!(names.contains(&("mb1".into(), 1, String::new())));
    assert!(names.contains(&("mb1".into(), 2, String::new())));
    for part in [
        "BCT",
        "MB1_BCT",
        "VER",
        "kernel-dtb",
        "bootloader-dtb",
        "bpmp-fw-dtb",
    ] {
        for fab in ["B01", "B00"] {
            let spec = format!("3310-{fab}---1-0-jetson-tx2-devkit-mmcblk0p1");
            assert!(
                names.contains(&(part.into(), 0, spec.clone())),
                "{part} for {spec}"
            );
        }
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let expected = m["expected"].as_object().unwrap();
    assert_eq!(expected.len(), 19, "one selected entry per partition");
    for (part, e) in expected {
        assert!(
            e["length"].as_u64() <= e["partition_size"].as_u64(),
            "{part} does not fit"
        );
    }
    // BCT carries the T18x fields the updater compares (docs/spec/bup-format.md §4.6).
    let bct = (0..count)
        .map(|i| &b[header + 120 * i..header + 120 * (i + 1)])
        .find(|e| cstr(&e[..40]) == "BCT")
        .unwrap();
    let bct = &b[u32_at(bct, 40) as usize..][..u32_at(bct, 44) as usize];
    assert_eq!(
        [u32_at(bct, 0), u32_at(bct, 1700), u32_at(bct, 1704)],
        [3584, 14, 9]
    );

    // sysinstall's own parser must agree on the entries, once it exists.
    let o = crate::support::output(
        crate::support::sysinstall()
            .args(["bup", "list", "--format", "json"])
            .arg(&out),
    );
    assert!(
        o.status.success(),
        "bup list: {}",
        crate::support::stderr(&o)
    );
    let listed = crate::support::stdout(&o);
    for (name, _, spec) in &names {
        assert!(
            listed.contains(&format!("\"{name}\"")),
            "bup list lacks {name}"
        );
        if !spec.is_empty() {
            assert!(listed.contains(spec.as_str()), "bup list lacks spec {spec}");
        }
    }
}

const NANO_TNSPEC: &str = "3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-nvme0n1p1";
/// What `sysinstall` derives from NANO_TNSPEC (meta-tegra's gen_compat_3767).
const NANO_COMPAT: &str = "3767--0005--1--jetson-orin-nano-devkit-";

/// The T234 payloads (`--t234 firmware|kernel`) for the Orin Nano NVMe
/// layout: decoded here as docs/spec/bup-format.md §1.9 lays V3 out (48-byte
/// header, 184-byte entries with a 128-byte spec, bare names), and the
/// entries the manifest says the firmware picks are the ones `sysinstall bup
/// check` selects for the board: the qemu UEFI tier stages capsules of these.
#[test]
fn mkbup_t234_payloads_are_v3_and_select_as_sysinstall_does() {
    let dir = tempfile::tempdir().unwrap();
    let layout = crate::support::repo().join("layouts/jetson-orin-nano-devkit-nvme.xml");
    let l = layout.to_str().unwrap();
    for (kind, count) in [("firmware", 28), ("kernel", 3)] {
        let out = dir.path().join(format!("{kind}.bup"));
        let manifest = dir.path().join(format!("{kind}.json"));
        let m = manifest.to_str().unwrap();
        mkbup(
            &[
                "--t234",
                kind,
                "--layout",
                l,
                "--tnspec",
                NANO_TNSPEC,
                "--decoy-fab",
                "000",
                "--compat-spec",
                NANO_COMPAT,
                "--manifest",
                m,
            ],
            &out,
        );
        let b = std::fs::read(&out).unwrap();
        assert_eq!(&b[..16], b"NVIDIA__BLOB__V3");
        assert_eq!(u32_at(&b, 16), 0x0103_0622, "{kind}: version 3.1");
        assert_eq!(u32_at(&b, 20) as usize, b.len(), "{kind}: blob_size");
        let header = u32_at(&b, 24) as usize;
        assert_eq!(header, 48);
        assert_eq!(u32_at(&b, 28) as usize, count, "{kind}: entries");
        let mut next = header + 184 * count;
        let mut entries = Vec::new();
        for i in 0..count {
            let e = &b[header + 184 * i..header + 184 * (i + 1)];
            let (off, len) = (u32_at(e, 40) as usize, u32_at(e, 44) as usize);
            assert_eq!(off, next, "{kind}: entry {i} is not contiguous");
            next += len;
            let name = cstr(&e[..40]);
            assert!(!name.starts_with("A_"), "{kind}: {name} is not bare");
            entries.push((name, u32_at(e, 52), cstr(&e[56..184])));
        }
        assert_eq!(next, b.len(), "{kind}: data ends at the end of the file");

        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let picked: Vec<u64> = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, e)| e["selected"] == true)
            .map(|(i, _)| i as u64)
            .collect();
        // A decoy (FAB 000) matches the compatible spec, so only the full
        // match of the board's entry keeps it out.
        assert!(entries
            .iter()
            .any(|(_, _, s)| s == "3767-000-0005--1--jetson-orin-nano-devkit-"));
        let o = crate::support::output(
            crate::support::sysinstall()
                .args(["bup", "check", "--format", "json", "--tnspec", NANO_TNSPEC])
                .args(["--layout", l])
                .arg(&out),
        );
        assert!(
            o.status.success(),
            "{kind}: bup check: {}{}",
            crate::support::stdout(&o),
            crate::support::stderr(&o)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["payload_kind"], kind);
        let selected: Vec<u64> = v["selected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert_eq!(
            selected, picked,
            "{kind}: the manifest's choice is sysinstall's"
        );
    }
}
