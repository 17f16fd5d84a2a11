//! `bup write --initialize --layout` with NVIDIA's stock TX2 layout from
//! tests/data: one XML drives the boot partition table written to the boot
//! device.

use crate::support::bup::*;
use sysinstall::layout::{self, BootDeviceKind, LoadOptions, Soc};

/// The APP size the layout leaves open (a placeholder in NVIDIA's XML).
const APPSIZE: &str = "15032385536";
const TNSPEC: &str = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1";

#[test]
fn initialize_from_the_stock_tx2_layout() {
    let xml = crate::support::data_dir().join("flash-layouts/r32.7.2-flash_l4t_t186.xml");
    let opts = LoadOptions {
        set: vec![("APPSIZE".into(), APPSIZE.into())],
        disk_sectors: None,
    };
    let l = layout::load(&xml, &opts).unwrap();
    assert_eq!(l.soc, Some(Soc::T186));
    let area = l.boot.clone().expect("a boot area");
    assert_eq!(area.kind, BootDeviceKind::SdmmcBoot);
    // The engine places exactly the table of docs/spec/bup-format.md §3.2 (computed
    // with nvflashxmlparse's rules and meta-tegra's names).
    assert_eq!(area.partitions, tx2_boot());
    let total = area.num_sectors.expect("num_sectors") * 512;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let boot = boot_images(dir, &[total / 2, total / 2]);
    let root = sysroot(dir, "24\n", "", "", None);
    let pairs: Vec<String> = area
        .partitions
        .iter()
        .filter_map(|p| p.name.strip_suffix("_b"))
        .filter(|n| !matches!(*n, "SMD" | "VER"))
        .map(str::to_owned)
        .collect();
    assert!(pairs.contains(&"mb1".to_string()), "{pairs:?}");
    let mut entries: Vec<(&str, Vec<u8>, u32, &str)> = pairs
        .iter()
        .map(|n| (n.as_str(), data(n, 1000), 0, ""))
        .collect();
    entries.push(("BCT", bct(3584, false, 0xB1), 0, ""));
    entries.push(("VER", data("ver", 100), 0, ""));
    let payload = dir.join("payload");
    std::fs::write(&payload, crate::support::bup::payload(&entries)).unwrap();

    let run = || {
        let mut cmd = sysinstall();
        cmd.args([
            "bup",
            "write",
            "--initialize",
            "--soc",
            "t186",
            "--tnspec",
            TNSPEC,
        ])
        .arg(&payload)
        .arg("--layout")
        .arg(&xml)
        .arg(format!("--set=APPSIZE={APPSIZE}"))
        .arg("--sysroot")
        .arg(&root);
        for b in &boot {
            cmd.arg("--boot-device").arg(b);
        }
        output(&mut cmd)
    };
    let mut want = Linear::read(&boot);
    let o = run();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let part = |n: &str| {
        area.partitions
            .iter()
            .find(|p| p.name == n)
            .unwrap()
            .clone()
    };
    for (name, d, ..) in &entries {
        match *name {
            "BCT" => [3584, 16384, 0].iter().for_each(|&at| want.put(at, d)),
            _ => {
                want.fill_partition(&part(name), d);
                want.fill_partition(&part(&format!("{name}_b")), d);
            }
        }
    }
    let got = Linear::read(&boot);
    // The table at the end of boot1 lists the layout's partitions.
    let n = total / 512;
    let header = got.get(total - 512, 512);
    let h = sysinstall::gpt::GptHeader::decode(&header).unwrap();
    assert_eq!((h.my_lba, h.partition_entry_lba), (n - 1, n - 33));
    let array = got.get((n - 33) * 512, 16384);
    let names: Vec<String> = h
        .decode_entries(&array)
        .unwrap()
        .into_iter()
        .map(|e| e.1.name)
        .collect();
    assert_eq!(
        names,
        area.partitions
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    );
    want.put((n - 33) * 512, &array);
    want.put(total - 512, &header[..92]);
    // Fresh slot metadata, slot A active (docs/spec/bup-format.md §4.9 golden bytes).
    let mut smd = vec![
        0x00, 0x4e, 0x42, 0x43, 0x03, 0x03, 0x02, 0x00, 0x0f, 0x5f, 0x61, 0x07, 0x00, 0x0e, 0x5f,
        0x62, 0x07, 0x01, 0x33, 0x14, 0xfc, 0xfe,
    ];
    smd.resize(191, 0);
    for s in ["SMD", "SMD_b"] {
        want.put(part(s).offset, &smd);
    }
    assert!(got == want, "boot devices differ from the model");

    let o = run();
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );
}
