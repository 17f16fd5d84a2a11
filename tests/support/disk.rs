//! Helpers for the disk tests: the expected tables of tests/data, hand-built
//! tables, and sgdisk as the independent checker.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use sysinstall::guid::{Guid, BASIC_DATA, EFI_SYSTEM};
use sysinstall::layout::{Partition, PartitionTable};

/// One row of an sgdisk listing: number, start, end, code, name.
pub type Row = (u32, u64, u64, String, String);

/// The listing part of `sgdisk --print` (also the format of expected/*.txt).
pub fn parse_rows(text: &str) -> Vec<Row> {
    text.lines()
        .skip_while(|l| !l.starts_with("Number  Start"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // number start end size unit code name
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[5].to_owned(),
                f[6..].join(" "),
            )
        })
        .collect()
}

/// The number after `key` in a listing line ("First usable sector is 34, ...").
pub fn number_after(text: &str, key: &str) -> u64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no '{key}' in\n{text}"))
        + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// An expected table of tests/data/flash-layouts/expected as a PartitionTable
/// (the disk size it states, its first usable LBA, last usable N − 34, the
/// rows; unique GUIDs open) and its rows.
pub fn expected_table(path: &Path) -> (PartitionTable, Vec<Row>) {
    let text = std::fs::read_to_string(path).unwrap();
    let disk_line = text
        .lines()
        .find(|l| l.starts_with("Disk ") && l.contains(" sectors,"))
        .unwrap_or_else(|| panic!("{}: no 'Disk ...: N sectors' line", path.display()));
    let disk_sectors = number_after(disk_line, ": ");
    let rows = parse_rows(&text);
    let partitions = rows
        .iter()
        .map(|(num, start, end, code, name)| Partition {
            number: *num,
            name: name.clone(),
            first_lba: *start,
            last_lba: *end,
            type_guid: match code.as_str() {
                "0700" => BASIC_DATA,
                "EF00" => EFI_SYSTEM,
                other => panic!("type code {other}"),
            },
            unique_guid: None,
            fills_disk: false,
        })
        .collect();
    let table = PartitionTable {
        sector_size: 512,
        disk_sectors,
        first_usable_lba: number_after(&text, "First usable sector is "),
        last_usable_lba: disk_sectors - 34,
        partitions,
    };
    (table, rows)
}

/// A partition of the basic-data type with an open unique GUID.
pub fn part(number: u32, name: &str, first: u64, last: u64) -> Partition {
    Partition::basic_data(number, name, first, last)
}

/// A small NVIDIA-like table for a disk of `n` sectors: numbers out of
/// physical order with a gap, an aligned first partition, a fill partition.
pub fn small_table(n: u64) -> PartitionTable {
    let mut app = part(1, "APP", 20480, n - 34);
    app.fills_disk = true;
    app.unique_guid = Some(Guid::parse("0D1BE901-1111-4222-8333-444455556666").unwrap());
    let mut esp = part(6, "esp", 12288, 20479);
    esp.type_guid = EFI_SYSTEM;
    PartitionTable {
        sector_size: 512,
        disk_sectors: n,
        first_usable_lba: 40,
        last_usable_lba: n - 34,
        partitions: vec![
            app,
            part(2, "kernel", 40, 8231),
            part(3, "kernel-dtb", 8232, 9255),
            esp,
        ],
    }
}

/// The rows a table should list as, in number order.
pub fn rows_of(t: &PartitionTable) -> Vec<Row> {
    let mut rows: Vec<Row> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.number,
                p.first_lba,
                p.last_lba,
                p.type_guid.sgdisk_code().unwrap().to_owned(),
                p.name.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// `sgdisk --print` of a device or image.
pub fn sgdisk_print(dev: &Path) -> String {
    let o = Command::new("sgdisk")
        .arg("--print")
        .arg(dev)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sgdisk --print: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `sgdisk --verify` of a device or image.
pub fn sgdisk_verify(dev: &Path) -> String {
    let o = Command::new("sgdisk")
        .arg("--verify")
        .arg(dev)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Asserts sgdisk lists exactly `want` and says nothing is wrong.
pub fn assert_sgdisk_agrees(dev: &Path, want: &[Row], first_usable: u64, n: u64) {
    crate::support::require_tools(&["sgdisk"]);
    let print = sgdisk_print(dev);
    let got = parse_rows(&print);
    assert_eq!(got.len(), want.len(), "{print}");
    for (g, w) in got.iter().zip(want) {
        // sgdisk shortens long names in its listing ("reserved_for_chain_...").
        let name_ok =
            g.4 == w.4 || (g.4.ends_with("...") && w.4.starts_with(g.4.trim_end_matches('.')));
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.2 == w.2 && g.3 == w.3 && name_ok,
            "sgdisk {g:?}, want {w:?}"
        );
    }
    assert_eq!(
        number_after(&print, "First usable sector is "),
        first_usable,
        "{print}"
    );
    assert_eq!(
        number_after(&print, "last usable sector is "),
        n - 34,
        "{print}"
    );
    assert_eq!(number_after(&print, "holds up to "), 128, "{print}");
    let verify = sgdisk_verify(dev);
    assert!(
        verify.contains("No problems found"),
        "sgdisk --verify:\n{verify}"
    );
}

/// A fingerprint of an image file that reads only its data extents
/// (SEEK_DATA/SEEK_HOLE): any write, even of zeros into a hole, changes it,
/// and a 60 GiB sparse image costs what its few written MiB cost.
pub fn fingerprint(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut pos: i64 = 0;
    while pos < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole is left
        }
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        h.update(data.to_le_bytes());
        h.update(hole.to_le_bytes());
        f.seek(SeekFrom::Start(data as u64)).unwrap();
        let mut chunk = (&mut f).take((hole - data) as u64);
        std::io::copy(&mut chunk, &mut HashWriter(&mut h)).unwrap();
        pos = hole;
    }
    format!("{:x}", h.finalize())
}

struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
