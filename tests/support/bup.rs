//! Fixtures for the `bup` tests: a fake board (sysfs, cmdline, EEPROM,
//! board.conf under a directory), boot devices and a user-area disk as image
//! files, payloads made with `bup::payload::Builder`, and an independent
//! model of what the images must hold afterwards.
//!
//! Mocks, and why: a Jetson's EEPROM, fuses and eMMC boot partitions cannot
//! exist on the test host, so the EEPROM and sysfs files live in a directory
//! (`--sysroot`) and boot0/boot1 and the SPI flash are image files. The
//! user-area GPT is made by sgdisk, not by our own GPT code.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use sysinstall::bup::bootgpt;
use sysinstall::bup::payload::Builder;
use sysinstall::guid::Guid;
use sysinstall::layout::{BootArea, BootPartition, Layout, Partition, PartitionTable, Soc};

pub const MIB: u64 = 1 << 20;

/// The bup tests drive the binary through these as well.
#[allow(unused_imports)]
pub use super::{output, stderr, stdout, sysinstall};

include!("../../src/bup/test_tables.rs");

/// A layout for `soc`: the user area of a `disk_bytes` disk holding `user`
/// (`(name, offset, size)` in bytes, numbered in order), and `boot`.
pub fn test_layout(
    soc: Soc,
    disk_bytes: u64,
    user: &[(String, u64, u64)],
    boot: BootArea,
) -> Layout {
    let partitions = user
        .iter()
        .enumerate()
        .map(|(i, (name, offset, size))| {
            Partition::basic_data(i as u32 + 1, name, offset / 512, (offset + size) / 512 - 1)
        })
        .collect();
    Layout {
        source: format!("{soc:?} test layout"),
        soc: Some(soc),
        user: PartitionTable {
            sector_size: 512,
            disk_sectors: disk_bytes / 512,
            first_usable_lba: 34,
            last_usable_lba: disk_bytes / 512 - 34,
            partitions,
        },
        boot: Some(boot),
        notes: Vec::new(),
    }
}

/// Distinct, recognisable data for an entry.
pub fn data(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes()
        .chain(std::iter::repeat(b'.'))
        .take(len)
        .enumerate()
        .map(|(i, b)| if i % 97 == 96 { (i / 97) as u8 } else { b })
        .collect()
}

/// A BCT of `len` bytes with the four fields REF checks set (T18x or T19x
/// offsets), and `fill` everywhere else.
pub fn bct(len: usize, t19x: bool, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; len];
    let (v, blk, page) = if t19x {
        (2360, 2364, 2368)
    } else {
        (1696, 1700, 1704)
    };
    b[..4].copy_from_slice(&(len as u32).to_le_bytes());
    b[v..v + 4].copy_from_slice(&0x0007_0001u32.to_le_bytes());
    b[blk..blk + 4].copy_from_slice(&14u32.to_le_bytes());
    b[page..page + 4].copy_from_slice(&9u32.to_le_bytes());
    b
}

/// The NV3 VER record of release R32.`minor`.`maint` (docs/spec/bup-format.md §4.8).
pub fn ver(minor: u32, maint: u32) -> Vec<u8> {
    let head = format!(
        "NV3\n# R32 , REVISION: {minor}.{maint}\nBOARDID=3448 BOARDSKU=0000 FAB=200\n20230102030405\n"
    );
    let crc = sysinstall::bup::ver::cksum(head.as_bytes());
    format!("{head}BYTES:{} CRC32:{crc}\n", head.len()).into_bytes()
}

/// A module EEPROM image (layout version 1) with this part number.
pub fn eeprom(part_number: &str) -> Vec<u8> {
    let mut e = vec![0u8; 256];
    e[0] = 1;
    e[20..42].fill(0xFF);
    e[20..20 + part_number.len()].copy_from_slice(part_number.as_bytes());
    e[150..154].copy_from_slice(b"NVCB");
    e[154] = 28;
    e[156..158].copy_from_slice(b"M1");
    e[255] = sysinstall::bup::board::crc8(&e[..255]);
    e
}

/// A fake board root for `--sysroot`.
pub fn sysroot(
    dir: &Path,
    chip_id: &str,
    cmdline: &str,
    board_conf: &str,
    eeprom_at: Option<(&str, &[u8])>,
) -> PathBuf {
    let root = dir.join("root");
    let put = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put(
        "sys/module/tegra_fuse/parameters/tegra_chip_id",
        chip_id.as_bytes(),
    );
    put("proc/cmdline", cmdline.as_bytes());
    put("etc/sysinstall/board.conf", board_conf.as_bytes());
    if let Some((bus_addr, bytes)) = eeprom_at {
        put(&format!("sys/bus/i2c/devices/{bus_addr}/eeprom"), bytes);
    }
    root
}

/// Boot device images (zeros) of these sizes.
pub fn boot_images(dir: &Path, sizes: &[u64]) -> Vec<PathBuf> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let p = dir.join(format!("boot{i}.img"));
            let f = std::fs::File::create(&p).unwrap();
            f.set_len(size).unwrap();
            p
        })
        .collect()
}

/// The bytes of several images seen as one linear device, and back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear(pub Vec<Vec<u8>>);

impl Linear {
    pub fn read(paths: &[PathBuf]) -> Linear {
        Linear(paths.iter().map(|p| std::fs::read(p).unwrap()).collect())
    }

    pub fn save(&self, paths: &[PathBuf]) {
        for (p, b) in paths.iter().zip(&self.0) {
            std::fs::write(p, b).unwrap();
        }
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|b| b.len() as u64).sum()
    }

    /// Writes `bytes` at a linear offset (must not cross devices).
    pub fn put(&mut self, mut at: u64, bytes: &[u8]) {
        for dev in &mut self.0 {
            if at < dev.len() as u64 {
                let a = at as usize;
                dev[a..a + bytes.len()].copy_from_slice(bytes);
                return;
            }
            at -= dev.len() as u64;
        }
        panic!("offset outside the device");
    }

    pub fn get(&self, mut at: u64, len: usize) -> Vec<u8> {
        for dev in &self.0 {
            if at < dev.len() as u64 {
                let a = at as usize;
                return dev[a..a + len].to_vec();
            }
            at -= dev.len() as u64;
        }
        panic!("offset outside the device");
    }

    /// A partition gets `data` followed by zeros to its end.
    pub fn fill_partition(&mut self, p: &BootPartition, data: &[u8]) {
        let mut bytes = data.to_vec();
        bytes.resize(p.size as usize, 0);
        self.put(p.offset, &bytes);
    }

    /// Writes NVIDIA's pseudo-GPT for `parts` (our encoder, pinned by
    /// golden values in its unit tests).
    pub fn put_table(&mut self, parts: &[BootPartition]) {
        let len = self.len();
        let mut n = 0u8;
        let e = bootgpt::encode(parts, len, || {
            n = n.wrapping_add(1);
            Guid::from_bytes([n; 16])
        })
        .unwrap();
        self.put(bootgpt::entries_offset(len), &e.entries);
        self.put(bootgpt::header_offset(len), &e.header);
    }
}

/// A user-area disk image made by sgdisk: partition `i` at `(i + 1)` MiB.
pub struct UserDisk {
    pub path: PathBuf,
    pub parts: Vec<(String, u64, u64)>,
}

impl UserDisk {
    pub fn new(dir: &Path, parts: &[(&str, u64)]) -> UserDisk {
        let path = dir.join("user.img");
        let size = (parts.len() as u64 + 2) * MIB;
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        let mut cmd = Command::new("sgdisk");
        cmd.arg("-o");
        let mut out = Vec::new();
        for (i, (name, len)) in parts.iter().enumerate() {
            let start = (i as u64 + 1) * MIB / 512;
            let end = start + len / 512 - 1;
            cmd.arg(format!("-n{}:{start}:{end}", i + 1))
                .arg(format!("-c{}:{name}", i + 1));
            out.push((name.to_string(), start * 512, *len));
        }
        let o = cmd.arg(&path).output().expect("running sgdisk");
        assert!(
            o.status.success(),
            "sgdisk: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        UserDisk { path, parts: out }
    }

    pub fn partition(&self, name: &str) -> BootPartition {
        let (n, offset, size) = self.parts.iter().find(|p| p.0 == name).unwrap();
        BootPartition {
            name: n.clone(),
            offset: *offset,
            size: *size,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.0.clone()).collect()
    }
}

/// Fails the test unless sgdisk (the independent reader of the user-area
/// GPT) is there.
pub fn require_sgdisk() {
    crate::support::require_tools(&["sgdisk"]);
}

/// `(name, data, op_mode, spec)` entries into a payload.
pub fn payload(entries: &[(&str, Vec<u8>, u32, &str)]) -> Vec<u8> {
    let mut b = Builder::new();
    for (name, data, op, spec) in entries {
        b = b.entry(name, data, *op, spec);
    }
    b.build()
}

/// Sets a file's modification time well in the past, so a later write is
/// visible even within the same second.
pub fn age(path: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000),
    )
    .unwrap();
}

pub fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}
