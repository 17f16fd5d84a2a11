//! Resource bounds (issue 8): inputs that claim enormous sizes are refused or
//! handled without allocating what they claim. A counting allocator measures
//! the peak heap of each parse on its own thread, so the tests assert memory
//! bounds (deterministic), never times.
//!
//! The BUP and tar generators live in `support::hostile`; they are checked
//! against independent readers (the documented byte vector, GNU tar, the tar
//! crate) and fed to the BUP parser and the rootfs tar reader: a payload
//! claiming 4 GiB or u32::MAX entries is refused with under 1 KiB of heap, a
//! 1 GiB PAX header with 9 KiB, a 10 GiB sparse file is mapped with 13 KiB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Read};
use support::hostile;
use sysinstall::gpt::{self, GptError, GptHeader};
use sysinstall::guid::Guid;
use sysinstall::layout::{self, LoadOptions};

/// Counts live heap bytes per thread (tests run on parallel threads).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: forwards to `System`; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        track(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        track(n as isize - l.size() as isize);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f` and returns its result and the most heap it had live at once
/// beyond what was live before (bytes).
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get) - base;
    eprintln!("peak heap: {peak} bytes");
    (r, peak.max(0) as usize)
}

const MIB: usize = 1 << 20;

fn partitions(n: usize) -> String {
    let mut s = String::with_capacity(n * 64);
    for i in 0..n {
        s.push_str(&format!(
            "<partition name=\"p{i}\" type=\"data\"><size>512</size></partition>\n"
        ));
    }
    s
}

#[test]
fn a_layout_with_a_million_partitions_is_refused_in_bounded_memory() {
    let text = format!(
        "<partition_layout>\n<device type=\"sdmmc_user\" num_sectors=\"61071360\">\n{}</device></partition_layout>\n",
        partitions(1_000_000)
    );
    assert!(text.len() > 60 * MIB);
    let (r, peak) = peak_of(|| layout::parse(&text, "million.xml", &LoadOptions::default()));
    let e = r.unwrap_err().to_string();
    // Refused at partition 1025, on line 1027: it stopped reading there.
    assert_eq!(
        e,
        "million.xml:1027: device 'sdmmc_user' has more than 1024 partitions"
    );
    assert!(peak < 4 * MIB, "parsing took {peak} bytes of heap");
}

#[test]
fn a_million_partitions_spread_over_devices_are_refused_in_bounded_memory() {
    let mut text = String::from("<partition_layout>\n");
    for d in 0..1000 {
        text.push_str(&format!("<device type=\"x{d}\">\n"));
        text.push_str(&partitions(1000));
        text.push_str("</device>\n");
    }
    text.push_str("</partition_layout>\n");
    let (r, peak) = peak_of(|| layout::parse(&text, "spread.xml", &LoadOptions::default()));
    let e = r.unwrap_err().to_string();
    assert!(e.ends_with(": more than 16 devices"), "{e}");
    // 16 devices × 1000 partitions kept, each a few hundred bytes.
    assert!(peak < 32 * MIB, "parsing took {peak} bytes of heap");
}

#[test]
fn a_csv_with_a_million_rows_is_refused_in_bounded_memory() {
    let text: String = (0..1_000_000)
        .map(|i| format!("{},p{i},8,,,,\n", i % 128 + 1))
        .collect();
    let opts = LoadOptions {
        set: vec![],
        disk_sectors: Some(61_071_360),
    };
    let (r, peak) = peak_of(|| layout::parse(&text, "million.csv", &opts));
    assert_eq!(
        r.unwrap_err().to_string(),
        "million.csv:129: more than 128 rows"
    );
    assert!(peak < MIB, "parsing took {peak} bytes of heap");
}

#[test]
fn huge_sizes_and_offsets_are_refused_with_a_named_error() {
    let xml = |body: &str, n: &str| {
        format!(
            "<partition_layout>\n<device type=\"sdmmc_user\" num_sectors=\"{n}\">\n\
             <partition name=\"pgpt\" type=\"primary_gpt\"><size>16896</size></partition>\n\
             <partition name=\"A\" type=\"data\">{body}</partition>\n</device></partition_layout>\n"
        )
    };
    let max = u64::MAX.to_string();
    for (body, n, want) in [
        (
            "<size>0xFFFFFFFFFFFFFFFF</size>",
            "61071360",
            "t.xml:4: partition 'A': ends at sector 36028797018964001",
        ),
        (
            "<size>512</size><start_location>0xFFFFFFFFFFFFFFFF</start_location>",
            "61071360",
            "past the last usable sector",
        ),
        (
            "<size>512</size><align_boundary>0xFFFFFFFFFFFFFE00</align_boundary>",
            "61071360",
            "past the last usable sector",
        ),
        (
            "<size>18446744073709551616</size>",
            "61071360",
            "<size> '18446744073709551616' is not a number",
        ),
        ("<size>512</size>", &max, "larger than 2^63 bytes"),
        (
            "<allocation_attribute>0x808</allocation_attribute>",
            &max,
            "larger than 2^63 bytes",
        ),
    ] {
        let (r, peak) = peak_of(|| layout::parse(&xml(body, n), "t.xml", &LoadOptions::default()));
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{body} on {n}: {e}");
        assert!(peak < MIB);
    }
}

fn header(count: u32, size: u32) -> GptHeader {
    GptHeader {
        revision: gpt::REVISION_1_0,
        header_size: gpt::HEADER_SIZE,
        my_lba: 1,
        alternate_lba: 4095,
        first_usable_lba: 34,
        last_usable_lba: 4062,
        disk_guid: Guid::from_bytes([1; 16]),
        partition_entry_lba: 2,
        num_partition_entries: count,
        sizeof_partition_entry: size,
        partition_entry_array_crc32: 0,
    }
}

#[test]
fn a_gpt_claiming_an_enormous_entry_array_is_refused_in_bounded_memory() {
    for (count, size) in [
        (u32::MAX, 128),
        (1, 1 << 31),
        (65536, 65536),
        (8193, 128), // one entry over the 1 MiB bound
    ] {
        let sector = header(count, size).encode();
        assert_eq!(
            GptHeader::decode(&sector),
            Err(GptError::EntryArrayTooLarge { count, size }),
        );
        let mut disk = Cursor::new(vec![0u8; 4096 * 512]);
        disk.get_mut()[512..1024].copy_from_slice(&sector);
        let (r, peak) = peak_of(|| gpt::read::read(&mut disk, 4096));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("is larger than 1048576 bytes"), "{e}");
        assert!(peak < 64 * 1024, "reading took {peak} bytes of heap");
    }
    // The largest accepted array (1 MiB) whose sectors run past the disk is
    // refused before it is read.
    let mut disk = Cursor::new(vec![0u8; 4096 * 512]);
    disk.get_mut()[512..1024].copy_from_slice(&header(8192, 128).encode());
    let (r, peak) = peak_of(|| gpt::read::read(&mut disk, 1024));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("entry array at LBA 2..2050 is outside the disk"),
        "{e}"
    );
    assert!(peak < 64 * 1024, "reading took {peak} bytes of heap");
}

#[test]
fn bup_generator_matches_the_documented_payload() {
    // docs/spec/bup-format.md §6.1: two entries, 8-byte accessory, 312 bytes.
    let b = hostile::bup_v2(
        &[
            hostile::BupEntry {
                partition: "mb2",
                data: b"MB2DATA!",
                version: 0x3275,
                op_mode: 0,
                spec: "",
            },
            hostile::BupEntry {
                partition: "BCT",
                data: &(0..16).collect::<Vec<u8>>(),
                version: 0x3275,
                op_mode: 0,
                spec: "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1",
            },
        ],
        0x0102_0621,
        &[0; 8],
    );
    assert_eq!(b.len(), 312);
    assert_eq!(&b[..16], b"NVIDIA__BLOB__V2");
    assert_eq!(
        &b[16..48],
        &[
            0x21, 0x06, 0x02, 0x01, 0x38, 0x01, 0, 0, 0x30, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x38,
            0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    assert_eq!(&b[0x30..0x34], b"mb2\0");
    assert_eq!(&b[0x30 + 40..0x30 + 48], &[0x20, 1, 0, 0, 8, 0, 0, 0]);
    assert_eq!(&b[0xa8..0xac], b"BCT\0");
    assert_eq!(&b[0x120..0x128], b"MB2DATA!");
    assert_eq!(&b[0x128..0x12c], &[0, 1, 2, 3]);

    let big = hostile::bup_entry_claiming_4gib();
    assert_eq!(big.len(), 48 + 120 + 8);
    assert_eq!(&big[48 + 44..48 + 48], &[0xFF; 4]);
    let many = hostile::bup_entry_count_claiming(u32::MAX);
    assert_eq!((many.len(), &many[28..32]), (48, &[0xFF; 4][..]));
    let wrap = hostile::bup_entry_wrapping_u32();
    let off = u32::from_le_bytes(wrap[80..84].try_into().unwrap());
    let len = u32::from_le_bytes(wrap[84..88].try_into().unwrap());
    assert!(
        off.wrapping_add(len) < wrap.len() as u32
            && u64::from(off) + u64::from(len) > wrap.len() as u64
    );
}

/// `tar -tvf` on an archive, when GNU tar is there.
fn gnu_tar_list(bytes: &[u8]) -> Option<(String, String)> {
    support::require_tools(&["tar"]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.tar");
    std::fs::write(&f, bytes).unwrap();
    let o = support::output(std::process::Command::new("tar").arg("-tvf").arg(&f));
    Some((support::stdout(&o), support::stderr(&o)))
}

#[test]
fn sparse_generators_describe_a_10_gib_file_gnu_tar_agrees() {
    for (what, bytes) in [
        ("gnu", hostile::tar_gnu_sparse()),
        ("pax 1.0", hostile::tar_pax_sparse_1_0()),
    ] {
        assert!(bytes.len() < 8192, "{what}: {} bytes", bytes.len());
        let Some((out, err)) = gnu_tar_list(&bytes) else {
            return;
        };
        assert!(
            out.contains(" 10737418240 ") && out.contains("sparse.bin"),
            "{what}: {out} {err}"
        );
    }
}

#[test]
fn the_tar_crate_reads_the_gnu_sparse_file_without_allocating_its_size() {
    let bytes = hostile::tar_gnu_sparse();
    let (r, peak) = peak_of(|| {
        let mut a = tar::Archive::new(Cursor::new(&bytes));
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let size = e.size();
        // The first MiB is hole.
        let mut head = vec![0u8; MIB];
        e.read_exact(&mut head).unwrap();
        (size, head.iter().all(|&b| b == 0))
    });
    assert_eq!(r, (hostile::SPARSE_SIZE, true));
    assert!(peak < 4 * MIB, "{peak} bytes of heap");
}

#[test]
fn pax_generators_claim_what_they_say() {
    let claim = hostile::tar_pax_header_claiming(1 << 30);
    assert_eq!(claim.len(), 1024);
    assert_eq!(&claim[124..136], b"10000000000\0");
    if let Some((_, err)) = gnu_tar_list(&claim) {
        // A correct header whose data is missing, not a corrupt header.
        assert!(err.contains("nexpected EOF"), "{err}");
    }
    // The streamed archive is exactly header + 1 MiB of records + file.
    let mut n = 0u64;
    let mut s = hostile::PaxStream::new(MIB as u64);
    let mut buf = vec![0u8; 65536];
    let mut first = Vec::new();
    loop {
        let k = s.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        if first.len() < 1024 {
            first.extend_from_slice(&buf[..k.min(1024)]);
        }
        n += k as u64;
    }
    assert_eq!(n, 512 + MIB as u64 + 512 + 512 + 1024);
    assert!(first[512..].starts_with(b"1048576 comment=aaa"));
    let small = hostile::PaxStream::new(MIB as u64);
    let mut a = tar::Archive::new(small);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["small"]);
}

#[test]
fn the_tar_crate_refuses_a_truncated_1_gib_pax_header_in_bounded_memory() {
    let bytes = hostile::tar_pax_header_claiming(1 << 30);
    let (r, peak) = peak_of(|| {
        let mut a = tar::Archive::new(Cursor::new(&bytes));
        a.entries()
            .unwrap()
            .map(|e| e.map(|_| ()))
            .collect::<Result<Vec<()>, _>>()
    });
    assert!(
        r.is_err(),
        "a header claiming 1 GiB of missing data was accepted"
    );
    // tar 0.4.46 caps its pre-allocation for PAX data at 128 KiB (entry.rs
    // read_all) but reads whatever is there: the rootfs reader must cap real
    // PAX data itself (see the module docs).
    assert!(peak < MIB, "{peak} bytes of heap");
}

// The generators wired to the BUP parser and the rootfs tar reader.

#[test]
fn bup_payloads_claiming_what_they_lack_are_refused_in_bounded_memory() {
    use sysinstall::bup::payload::Payload;
    for (what, bytes, want) in [
        (
            "4 GiB entry",
            hostile::bup_entry_claiming_4gib(),
            "beyond end of file",
        ),
        (
            "u32::MAX entries",
            hostile::bup_entry_count_claiming(u32::MAX),
            "cannot load all update entries",
        ),
        (
            "u32 wrap",
            hostile::bup_entry_wrapping_u32(),
            "beyond end of file",
        ),
    ] {
        let (r, peak) = peak_of(|| Payload::parse_bytes(&bytes));
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{what}: {e}");
        assert!(peak < 64 * 1024, "{what}: {peak} bytes of heap");
    }
}

#[test]
fn the_tar_reader_refuses_a_1_gib_pax_header_in_bounded_memory() {
    use sysinstall::rootfs::tar::TarReader;
    for bytes in [None, Some(hostile::tar_pax_header_claiming(1 << 30))] {
        let (r, peak) = peak_of(|| match &bytes {
            None => TarReader::new(std::io::BufReader::new(hostile::PaxStream::new(1 << 30)))
                .next_entry(),
            Some(b) => TarReader::new(std::io::BufReader::new(&b[..])).next_entry(),
        });
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("PAX"), "{e}");
        assert!(peak < 8 * MIB, "{peak} bytes of heap");
    }
}

#[test]
fn the_tar_reader_maps_a_10_gib_sparse_file_without_allocating_it() {
    use sysinstall::rootfs::tar::TarReader;
    for bytes in [hostile::tar_gnu_sparse(), hostile::tar_pax_sparse_1_0()] {
        let (r, peak) = peak_of(|| {
            let mut t = TarReader::new(std::io::BufReader::new(&bytes[..]));
            let e = t.next_entry().unwrap().unwrap();
            let mut data = Vec::new();
            loop {
                let chunk = t.fill_data().unwrap().to_vec();
                if chunk.is_empty() {
                    break;
                }
                t.consume_data(chunk.len());
                data.extend_from_slice(&chunk);
            }
            (e, data)
        });
        let (e, data) = r;
        assert_eq!(e.size, hostile::SPARSE_SIZE);
        let regions = e.sparse.unwrap();
        assert_eq!(
            (regions[0].offset, regions[0].len),
            (hostile::SPARSE_SIZE - 512, 512)
        );
        assert_eq!(data, hostile::sparse_data());
        assert!(peak < MIB, "{peak} bytes of heap");
    }
}
