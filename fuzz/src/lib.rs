//! The bodies of the fuzz targets: one function per parser, each feeding the
//! bytes to the parser and, when parsing succeeds, asserting what must then
//! hold (not just "no panic"). A fuzz target is a three-line file in
//! `fuzz_targets/` that calls one of these.
//!
//! Adding a target for a new parser (BUP, TNSPEC, tar paths, the boot-device
//! pseudo-GPT): write `pub fn name(data: &[u8])` here, add
//! `fuzz_targets/name.rs` and its `[[bin]]` in Cargo.toml, and (optionally)
//! a seed section in `src/bin/make-seeds.rs`. `run.sh` picks it up by itself.

pub mod alloc;
pub mod disk;

#[global_allocator]
static ALLOCATOR: alloc::Bounded = alloc::Bounded;

use std::io::Cursor;
use sysinstall::commands::site_config as config;
use sysinstall::gpt::{self, read::GptCopy, GptEntry, GptHeader};
use sysinstall::guid::Guid;
use sysinstall::install::{journal, stage};
use sysinstall::layout::{self, csv, render, BootArea, LoadOptions, PartitionTable};

/// Disk sizes (sectors) a layout is placed on besides its own `num_sectors`:
/// a 32 GB eMMC (TX2, AGX Xavier), a 16 MiB toy disk, and the largest size the
/// layout engine accepts.
const DISKS: [u64; 3] = [61_071_360, 32_768, MAX_DISK];

/// The largest disk whose byte size still fits Linux's `loff_t` (i64).
const MAX_DISK: u64 = i64::MAX as u64 / 512;

fn opts(disk: Option<u64>, set: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        set: set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        disk_sectors: disk,
    }
}

/// The `--set` values and disks each layout is tried with: the XML's own
/// size with a typical APPSIZE, then the fixed disks with smaller, huge and
/// odd values.
fn layout_options() -> Vec<LoadOptions> {
    vec![
        opts(None, &[("APPSIZE", "1073741824")]),
        opts(Some(DISKS[0]), &[("APPSIZE", "29360128000")]),
        opts(
            Some(DISKS[1]),
            &[("APPSIZE", "0x100000"), ("PPTSIZE", "16896")],
        ),
        opts(
            Some(DISKS[2]),
            &[("APPSIZE", "18446744073709551615"), ("EFISIZE", "1")],
        ),
        // Beyond what the engine accepts: must be refused, never placed.
        opts(Some(u64::MAX), &[("APPSIZE", "512")]),
    ]
}

/// Flash-layout XML through `layout::parse`, end to end (placeholders,
/// geometry, boot area, rendering, GPT encoding, CSV round trip).
pub fn layout_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for o in layout_options() {
        if let Ok(l) = layout::parse(text, "fuzz.xml", &o) {
            check_table(&l.user, o.disk_sectors);
            if let Some(b) = &l.boot {
                check_boot(b);
            }
            let _ = render::table(&l.user, &l.source);
            let _ = render::json(&l.user, l.boot.as_ref());
        }
    }
}

/// partition_table CSV through `csv::parse` + `csv::place` (and through
/// `layout::parse`, which must agree).
pub fn layout_csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = csv::parse(text, "fuzz.csv") else {
        return;
    };
    assert!(!parsed.rows.is_empty() && parsed.rows.len() <= csv::MAX_ROWS);
    let disks = parsed
        .disk_sectors
        .into_iter()
        .chain(DISKS)
        .chain([u64::MAX]);
    for n in disks {
        let placed = csv::place(&parsed, n, "fuzz.csv");
        if let Ok((t, _)) = &placed {
            assert_eq!(t.partitions.len(), parsed.rows.len());
            check_table(t, Some(n));
        }
        // The front door gives the same answer for text that is not XML.
        if !text.trim_start().starts_with('<') {
            let via_layout = layout::parse(text, "fuzz.csv", &opts(Some(n), &[]));
            assert_eq!(
                via_layout.as_ref().ok().map(|l| &l.user),
                placed.as_ref().ok().map(|(t, _)| t),
            );
        }
    }
}

/// Checks every rule a placed user-area table must satisfy, whatever input
/// produced it, then its GPT encoding and its CSV round trip.
pub fn check_table(t: &PartitionTable, disk: Option<u64>) {
    let n = t.disk_sectors;
    if let Some(d) = disk {
        assert_eq!(n, d, "table placed for another disk size");
    }
    let ss = t.sector_size;
    assert!(ss == 512 || ss == 4096, "sector size {ss}");
    assert!(n <= i64::MAX as u64 / ss, "disk of {n} sectors accepted");
    // LBA 0 (MBR) + LBA 1 (header) + 16 KiB of entries (32 or 4 sectors).
    let tail = 2 + 16384 / ss;
    assert!(
        t.first_usable_lba >= tail,
        "first usable {}",
        t.first_usable_lba
    );
    assert_eq!(t.last_usable_lba, n - tail);
    assert!(t.first_usable_lba <= t.last_usable_lba);
    assert!(!t.partitions.is_empty() && t.partitions.len() <= 128);

    let mut by_lba: Vec<&layout::Partition> = t.partitions.iter().collect();
    by_lba.sort_by_key(|p| p.first_lba);
    for w in t.partitions.windows(2) {
        assert!(w[0].number < w[1].number, "numbers not strictly increasing");
    }
    for w in by_lba.windows(2) {
        assert!(
            w[0].last_lba < w[1].first_lba,
            "'{}' {}..={} overlaps '{}' {}..={}",
            w[0].name,
            w[0].first_lba,
            w[0].last_lba,
            w[1].name,
            w[1].first_lba,
            w[1].last_lba
        );
    }
    let fills: Vec<_> = t.partitions.iter().filter(|p| p.fills_disk).collect();
    assert!(fills.len() <= 1, "two fill partitions");
    for p in &t.partitions {
        assert!((1..=128).contains(&p.number), "number {}", p.number);
        assert!(
            t.first_usable_lba <= p.first_lba
                && p.first_lba <= p.last_lba
                && p.last_lba <= t.last_usable_lba,
            "'{}' {}..={} outside the usable {}..={}",
            p.name,
            p.first_lba,
            p.last_lba,
            t.first_usable_lba,
            t.last_usable_lba
        );
        assert!(!p.name.is_empty() && !p.name.contains('\0'));
        assert!(p.name.encode_utf16().count() <= layout::MAX_NAME_UTF16);
        assert!(!p.type_guid.is_nil(), "'{}' has the nil type GUID", p.name);
        assert_ne!(
            p.unique_guid,
            Some(Guid::NIL),
            "'{}': nil unique GUID",
            p.name
        );
        assert_eq!(p.size_bytes(t.sector_size), p.sectors() * t.sector_size);
        if p.fills_disk {
            assert_eq!(p.last_lba, t.last_usable_lba);
        }
        let same_name = t.partitions.iter().filter(|q| q.name == p.name).count();
        assert_eq!(same_name, 1, "name '{}' used twice", p.name);
        if let Some(g) = p.unique_guid {
            let same = t.partitions.iter().filter(|q| q.unique_guid == Some(g));
            assert_eq!(same.count(), 1, "unique GUID {g} used twice");
        }
    }
    check_gpt_encoding(t);
    check_csv_round_trip(t);
    assert!(render::free_sectors(t) <= t.last_usable_lba + 1 - t.first_usable_lba);
}

/// The table as GPT entries and headers decodes back to itself.
fn check_gpt_encoding(t: &PartitionTable) {
    let filler = Guid::from_bytes([0x5a; 16]);
    let entries: Vec<(u32, GptEntry)> = t
        .partitions
        .iter()
        .map(|p| {
            let e = GptEntry {
                type_guid: p.type_guid,
                unique_guid: p.unique_guid.unwrap_or(filler),
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                attributes: 0,
                name: p.name.clone(),
            };
            (p.number, e)
        })
        .collect();
    let array = gpt::encode_entries(&entries, gpt::ENTRY_COUNT).expect("placed table encodes");
    let back = gpt::decode_entries(&array, gpt::ENTRY_SIZE).expect("encoded array decodes");
    assert_eq!(back, entries, "GPT entries do not round-trip");
    let header = GptHeader {
        revision: gpt::REVISION_1_0,
        header_size: gpt::HEADER_SIZE,
        my_lba: 1,
        alternate_lba: t.disk_sectors - 1,
        first_usable_lba: t.first_usable_lba,
        last_usable_lba: t.last_usable_lba,
        disk_guid: filler,
        partition_entry_lba: 2,
        num_partition_entries: gpt::ENTRY_COUNT,
        sizeof_partition_entry: gpt::ENTRY_SIZE,
        partition_entry_array_crc32: gpt::crc32(&array),
    };
    assert_eq!(GptHeader::decode(&header.encode()), Ok(header.clone()));
    assert_eq!(header.decode_entries(&array), Ok(entries));
}

/// What `layout --format csv` writes reads back as the same table.
fn check_csv_round_trip(t: &PartitionTable) {
    let Ok(text) = csv::write(t, "fuzz") else {
        // Only 4096-byte-sector tables and names a CSV row cannot carry are
        // refused.
        assert!(t.sector_size != 512 || t.partitions.iter().any(|p| !csv::name_fits(&p.name)));
        return;
    };
    let parsed = csv::parse(&text, "round-trip.csv")
        .unwrap_or_else(|e| panic!("written CSV does not parse: {e}\n{text}"));
    assert_eq!(parsed.disk_sectors, Some(t.disk_sectors));
    let (back, _) = csv::place(&parsed, t.disk_sectors, "round-trip.csv")
        .unwrap_or_else(|e| panic!("written CSV does not place: {e}\n{text}"));
    assert_eq!(&back, t, "CSV round trip changed the table\n{text}");
}

/// Boot-device partitions: non-empty, sector multiples, in order, no
/// overlap, inside the device when its size is known.
pub fn check_boot(b: &BootArea) {
    let mut end = 0u64;
    for (i, p) in b.partitions.iter().enumerate() {
        assert!(!p.name.is_empty());
        assert_eq!(
            b.partitions.iter().filter(|q| q.name == p.name).count(),
            1,
            "boot partition name '{}' used twice",
            p.name
        );
        assert!(p.size > 0 && p.size % 512 == 0 && p.offset % 512 == 0);
        assert!(p.offset >= end, "boot partition {i} '{}' overlaps", p.name);
        end = p
            .offset
            .checked_add(p.size)
            .expect("boot partition end overflows");
        if let Some(n) = b.num_sectors {
            assert!(
                end / 512 <= n.saturating_sub(33),
                "'{}' past the boot GPT",
                p.name
            );
        }
    }
    let _ = render::boot_conf(b);
}

/// GPT header and entry decoding: the raw bytes, then the same bytes with
/// their CRCs made right (so mutations reach past the CRC check).
pub fn gpt_structs(data: &[u8]) {
    check_header_bytes(data);
    let mut fixed = data.get(..gpt::SECTOR).unwrap_or(data).to_vec();
    disk::fix_header_crc(&mut fixed);
    check_header_bytes(&fixed);

    // Entry arrays: the first byte picks the entry size.
    let Some((&sel, array)) = data.split_first() else {
        return;
    };
    let size = [128u32, 128, 256, 512, 0, 100, 127, 1 << 31][usize::from(sel % 8)];
    let Ok(entries) = gpt::decode_entries(array, size) else {
        assert!(size < gpt::ENTRY_SIZE, "decode_entries refused size {size}");
        return;
    };
    let slots = u32::try_from(array.len() / size as usize).expect("slot count");
    let mut last = 0;
    for (number, e) in &entries {
        assert!(*number > last && *number <= slots, "entry number {number}");
        last = *number;
        let off = (*number as usize - 1) * size as usize;
        check_entry(&array[off..off + size as usize], e);
    }
    if entries.len() <= 4096 {
        let count = slots.min(gpt::MAX_ENTRY_ARRAY_BYTES as u32 / gpt::ENTRY_SIZE);
        if let Ok(again) = gpt::encode_entries(&entries, count) {
            assert_eq!(gpt::decode_entries(&again, gpt::ENTRY_SIZE), Ok(entries));
        }
    }
}

fn check_header_bytes(bytes: &[u8]) {
    let Ok(h) = GptHeader::decode(bytes) else {
        return;
    };
    assert!((gpt::HEADER_SIZE..=512).contains(&h.header_size));
    assert!(h.sizeof_partition_entry >= gpt::ENTRY_SIZE);
    assert!(h.sizeof_partition_entry.is_power_of_two());
    assert!(h.entry_array_bytes() <= gpt::MAX_ENTRY_ARRAY_BYTES);
    // We always write a 92-byte header; everything else survives.
    let encoded = h.encode();
    let canonical = GptHeader {
        header_size: gpt::HEADER_SIZE,
        ..h.clone()
    };
    assert_eq!(GptHeader::decode(&encoded), Ok(canonical));
    // Bytes 20..24 are UEFI's Reserved field: not kept, written as zeros.
    if h.header_size == gpt::HEADER_SIZE {
        let mut want = bytes[..92].to_vec();
        want[20..24].fill(0);
        want[16..20].copy_from_slice(&encoded[16..20]);
        assert_eq!(
            encoded[..92],
            want[..],
            "header does not re-encode to its bytes"
        );
    }
}

/// A decoded entry re-encodes to its own bytes (the name area exactly when
/// it held well-formed UTF-16 padded with zeros).
fn check_entry(raw: &[u8], e: &GptEntry) {
    assert!(!e.type_guid.is_nil());
    let encoded = e.encode().expect("a decoded entry encodes");
    assert_eq!(GptEntry::decode(&encoded), Ok(Some(e.clone())));
    assert_eq!(encoded[..56], raw[..56], "fixed fields do not round-trip");
    let units: Vec<u16> = raw[56..128]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let len = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    let well_formed = char::decode_utf16(units[..len].iter().copied()).all(|r| r.is_ok())
        && units[len..].iter().all(|&u| u == 0);
    if well_formed {
        assert_eq!(
            encoded[..],
            raw[..128],
            "entry does not re-encode to its bytes"
        );
    }
}

/// A disk's GPT (`gpt::read::read`), primary and backup, from a byte image.
///
/// The first byte: bit 0 makes the CRCs right before reading; bit 1 selects a
/// sparse disk (bytes 1..9 give the disk size in sectors, the rest is split
/// into the disk's head and tail, zeros between) instead of a plain image in
/// a `Cursor` (whose claimed size may exceed its bytes by bits 2–3).
pub fn gpt_read(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fix = mode & 1 != 0;
    if mode & 2 == 0 {
        let mut image = rest.to_vec();
        let n = (image.len() / 512) as u64 + u64::from((mode >> 2) & 3);
        if fix {
            disk::fix_gpt_crcs(&mut disk::VecImage(&mut image), n);
        }
        read_and_check(&mut Cursor::new(image), n);
    } else {
        let Some((size, rest)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let n = u64::from_le_bytes(*size);
        let (head, tail) = rest.split_at(rest.len() / 2);
        let mut d = disk::SparseDisk::new(n.saturating_mul(512), head, tail);
        if fix {
            disk::fix_gpt_crcs(&mut d, n);
        }
        read_and_check(&mut d, n);
    }
}

fn read_and_check<R: std::io::Read + std::io::Seek>(r: &mut R, n: u64) {
    let Ok(found) = gpt::read::read(r, n) else {
        return;
    };
    let again = gpt::read::read(r, n).ok().flatten();
    assert_eq!(found, again, "reading twice differs");
    let Some(g) = found else {
        return;
    };
    let h = &g.header;
    match g.copy {
        GptCopy::Primary => assert_eq!(h.my_lba, 1),
        GptCopy::Backup => {
            assert_eq!(h.my_lba, n - 1);
            assert!(
                g.other_copy_problem.is_some(),
                "backup used without a reason"
            );
        }
    }
    assert!(h.partition_entry_lba >= 2);
    assert!(h.partition_entry_lba + h.entry_array_sectors() <= n);
    assert!(h.first_usable_lba <= h.last_usable_lba + 1 && h.last_usable_lba < n - 1);
    let mut last = 0;
    let mut spans = Vec::new();
    for (number, e) in &g.entries {
        assert!(*number > last && *number <= h.num_partition_entries);
        last = *number;
        assert!(!e.type_guid.is_nil());
        assert!(
            h.first_usable_lba <= e.first_lba
                && e.first_lba <= e.last_lba
                && e.last_lba <= h.last_usable_lba,
            "entry {number} {}..={} outside the usable {}..={}",
            e.first_lba,
            e.last_lba,
            h.first_usable_lba,
            h.last_usable_lba
        );
        spans.push((e.first_lba, e.last_lba));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 < w[1].0, "entries overlap: {w:?}");
    }
}

/// The header of a staged copy of DATA, and a copy read through.
pub fn data_stage(data: &[u8]) {
    check_data_stage(data);
    // Again with the CRC made right, so mutations reach the fields.
    if data.len() >= 88 {
        let mut fixed = data.to_vec();
        let crc = gpt::crc32(&fixed[..84]).to_le_bytes();
        fixed[84..88].copy_from_slice(&crc);
        check_data_stage(&fixed);
    }
}

fn check_data_stage(data: &[u8]) {
    if let Ok(h) = stage::Header::decode(data) {
        assert_eq!(
            h.encode()[..],
            data[..512],
            "header does not re-encode to its bytes"
        );
    }
    let Ok(h) = stage::verify(&mut Cursor::new(data), 0, None) else {
        return;
    };
    assert!(
        h.len <= data.len() as u64 - stage::HEADER_LEN,
        "a copy longer than the bytes read"
    );
    // What passed once passes again against itself (the journal's view).
    assert_eq!(
        stage::verify(&mut Cursor::new(data), 0, Some(&h)).ok(),
        Some(h)
    );
}

/// The install journal record in LBA 0.
pub fn journal(data: &[u8]) {
    check_journal(data);
    // Again with the CRC made right, so mutations reach the field checks.
    if data.len() >= journal::RECORD_LEN {
        let mut fixed = data.to_vec();
        let crc = gpt::crc32(&fixed[..journal::RECORD_LEN - 4]).to_le_bytes();
        fixed[journal::RECORD_LEN - 4..journal::RECORD_LEN].copy_from_slice(&crc);
        check_journal(&fixed);
    }
}

fn check_journal(data: &[u8]) {
    let Some(r) = journal::Record::decode(data) else {
        return;
    };
    let encoded = r.encode();
    assert_eq!(
        encoded[..],
        data[..journal::RECORD_LEN],
        "record does not re-encode to its bytes"
    );
    assert_eq!(journal::Record::decode(&encoded), Some(r.clone()));
    assert!(
        r.done_marker().len() < 64,
        "marker does not fit s_last_mounted"
    );
    assert!(r.is_done(&r.done_marker()));
    let mut sector = [0u8; 512];
    let n = data.len().min(512);
    sector[..n].copy_from_slice(&data[..n]);
    let tail = sector[journal::AREA..].to_vec();
    journal::store(&mut sector, Some(&r));
    assert_eq!(journal::Record::decode(&sector), Some(r));
    assert_eq!(
        sector[journal::AREA..],
        tail[..],
        "store touched the partition records"
    );
    journal::store(&mut sector, None);
    assert_eq!(journal::Record::decode(&sector), None);
    assert_eq!(sector[journal::AREA..], tail[..]);
}

/// Filesystem identification from a partition's first bytes.
pub fn probe(data: &[u8]) {
    use sysinstall::probe::{ext_superblock, identify, Content};
    let c = identify(data);
    let _ = c.describe();
    match &c {
        Content::Ext(sb) => {
            assert_eq!(ext_superblock(data).as_ref(), Some(sb));
            assert!(sb.label.chars().count() <= 16);
            assert!(sb.last_mounted.chars().count() <= 64);
            assert!(matches!(sb.kind, "ext2" | "ext3" | "ext4"));
        }
        Content::Empty => assert!(data.iter().all(|&b| b == 0)),
        Content::Luks => assert!(data.starts_with(b"LUKS\xba\xbe")),
        _ => assert!(ext_superblock(data).is_none()),
    }
    assert_eq!(identify(data), c, "identify is not deterministic");
}

/// The site configuration file.
pub fn site_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(entries) = config::parse(text, "fuzz.conf") else {
        return;
    };
    let lines = text.lines().count();
    let mut last = 0;
    for e in &entries {
        assert!(config::KEYS.contains(&e.key.as_str()), "key '{}'", e.key);
        assert!(e.line > last && e.line as usize <= lines);
        last = e.line;
        assert!(!e.value.contains('\n'));
    }
    let mut args = sysinstall::cli::InstallArgs::default();
    if config::apply(&entries, "fuzz.conf", &mut args).is_ok() {
        let sets: Vec<&str> = entries
            .iter()
            .filter(|e| e.key == "set")
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(args.layout.set, sets, "set values lost or reordered");
    }
}

/// BUP payload header and entry table (`bup::payload`), then the TNSPEC
/// selection for a few boards.
pub fn bup_payload(data: &[u8]) {
    use sysinstall::bup::payload::{Payload, MAX_ENTRIES, NAME_LEN};
    use sysinstall::bup::tnspec;
    let Ok(p) = Payload::parse_bytes(data) else {
        return;
    };
    assert_eq!(p.file_size, data.len() as u64);
    assert!(p.header.header_size >= 40);
    assert_eq!(p.entries.len() as u64, u64::from(p.header.entry_count));
    assert!(p.header.entry_count <= MAX_ENTRIES);
    let table_end = u64::from(p.header.header_size)
        + u64::from(p.header.entry_count) * p.header.format.entry_len() as u64;
    assert!(table_end <= p.file_size, "entry table past the end");
    for (i, e) in p.entries.iter().enumerate() {
        assert_eq!(e.index as usize, i);
        assert!(e.end() <= p.file_size, "entry {i} past the end of the file");
        assert!(e.name.len() <= NAME_LEN && e.spec.len() <= p.header.format.spec_len());
        assert!(!e.name.iter().any(|b| matches!(b, 0 | b'\t' | b' ')));
        assert!(!e.spec.iter().any(|b| matches!(b, 0 | b'\t' | b' ')));
    }
    for spec in [
        "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1",
        "2888-400-0004--1-0-jetson-agx-xavier-devkit-internal",
        "3448-401-0000-B.0-1-0-jetson-nano-qspi-sd-mmcblk0p1",
    ] {
        let s = tnspec::select(&p.entries, spec);
        let mut names = Vec::new();
        for sel in &s.selected {
            let e = p
                .entries
                .get(sel.index as usize)
                .expect("selected index in range");
            assert_ne!(e.op_mode, tnspec::OP_MODE_PREPRODUCTION);
            assert!(!names.contains(&&e.name), "partition selected twice");
            names.push(&e.name);
        }
        for d in &s.dropped {
            assert!(s.selected.iter().any(|sel| sel.index == d.kept));
        }
        // docs/spec/bup-format.md §2.7 (REF): a partition with board-specific entries needs one
        // for this board; a common entry does not count.
        for m in &s.missing {
            assert!(
                p.entries
                    .iter()
                    .any(|e| !e.spec.is_empty() && e.name_lossy() == *m),
                "'{m}' missing but has no board-specific entry"
            );
        }
    }
}

/// UEFI FMP capsules (`uefi::capsule`), then the T234 payload inside them
/// through a window (`bup::payload`, `bup::t234`) for two boards.
pub fn capsule(data: &[u8]) {
    use sysinstall::bup::board::Slot;
    use sysinstall::bup::payload::Payload;
    use sysinstall::bup::t234::{self, BoardSpecs};
    use sysinstall::uefi::capsule::{image_header_len, Capsule, Window, CAPSULE_HEADER_LEN};
    let Ok(c) = Capsule::parse_bytes(data) else {
        return;
    };
    let len = data.len() as u64;
    assert_eq!(c.file_size, len);
    assert_eq!(u64::from(c.header.image_size), len);
    assert!(c.header.header_size >= CAPSULE_HEADER_LEN && u64::from(c.header.header_size) < len);
    assert_eq!(c.fmp.payload_item_count, 1);
    assert_eq!(
        c.fmp.item_offsets.len(),
        usize::from(c.fmp.embedded_driver_count) + 1
    );
    assert!(
        c.fmp.item_offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets not increasing"
    );
    let hlen = image_header_len(c.image.version).expect("a known image header version");
    let image_start = c.image.offset + hlen;
    let image_end = image_start + u64::from(c.image.update_image_size);
    assert_eq!(image_end + u64::from(c.image.update_vendor_code_size), len);
    assert!(c.image.update_image_index >= 1);
    assert_eq!(c.payload.end, image_end, "the payload ends with the image");
    assert!(
        c.payload.start >= image_start + 16,
        "payload before its header"
    );
    if let Some(a) = &c.auth {
        assert!(a.dw_length >= 24);
        assert_eq!(a.cert_data_len, a.dw_length - 24);
        assert!(image_start + 8 + u64::from(a.dw_length) <= c.payload.start);
    }
    assert!(c.payload_header.header_size >= 16);

    let mut w = Window::new(Cursor::new(data), c.payload.clone());
    let Ok(p) = Payload::parse(&mut w) else {
        return;
    };
    assert_eq!(p.file_size, c.payload_len());
    let _ = t234::validate_package(&mut w, &p).expect("reading from memory");
    for spec in [
        "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-",
        "3767-300-0005-K.2-0-0-jetson-orin-nano-devkit-",
    ] {
        let specs = BoardSpecs::resolve(None, None, Some(spec));
        let sel = t234::select(&p.entries, &specs);
        let mut names = Vec::new();
        for s in &sel.selected {
            let e = p
                .entries
                .get(s.index as usize)
                .expect("selected index in range");
            assert!(
                t234::update_mode_ok(e.op_mode, specs.production),
                "wrong fuse mode"
            );
            assert!(!names.contains(&&e.name), "image selected twice");
            names.push(&e.name);
        }
        let missing = t234::missing(&p.entries, &sel, &t234::fmp_required(None));
        for m in &missing {
            // Names are compared as printed: escaped, one-to-one.
            let printed = |n: &&Vec<u8>| n.escape_ascii().to_string() == m.name;
            assert!(
                !names.iter().any(printed),
                "{} selected and missing",
                m.name
            );
        }
        let (writes, _) = t234::kernel_writes(&p.entries, &specs, &[Slot::A, Slot::B], None);
        for wr in writes {
            assert!(u64::from(wr.offset) + u64::from(wr.length) <= p.file_size);
        }
    }
}

/// TNSPEC split / match / compat on arbitrary bytes (two specs per input,
/// split at the first NUL).
pub fn tnspec(data: &[u8]) {
    use sysinstall::bup::tnspec::{compat_spec, specs_match, split, FIELDS};
    let (a, b) = match data.iter().position(|&c| c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    for s in [a, b] {
        let f = split(s);
        assert!(f.len() <= FIELDS);
        assert_eq!(f.join(&b'-'), s, "split does not rejoin");
        for (i, field) in f.iter().enumerate() {
            assert!(i == 6 || !field.contains(&b'-'), "field {i} holds a dash");
        }
        assert!(specs_match(s, s), "a spec does not match itself");
        if let Some(c) = compat_spec(s) {
            assert_eq!(split(&c).len(), FIELDS, "compat spec has not 8 fields");
        }
    }
    let _ = specs_match(a, b);
}

/// The tar reader (`rootfs::tar`) with the member-name sanitiser and the
/// symlink resolver (`rootfs::path`) on every entry.
pub fn tar_entries(data: &[u8]) {
    use std::path::Component;
    use sysinstall::rootfs::path::{resolve_link, sanitize};
    use sysinstall::rootfs::tar::{Kind, TarReader};
    let mut r = TarReader::new(std::io::BufReader::new(data));
    for _ in 0..10_000 {
        let Ok(Some(e)) = r.next_entry() else {
            return;
        };
        assert!(e.offset <= data.len() as u64);
        if let Some(regions) = &e.sparse {
            let mut end = 0u64;
            let mut stored = 0u64;
            for reg in regions {
                assert!(reg.offset >= end, "sparse regions overlap or go back");
                end = reg
                    .offset
                    .checked_add(reg.len)
                    .expect("region end overflows");
                stored += reg.len;
            }
            assert!(end <= e.size, "sparse data past the real size");
            let _ = stored;
        }
        if let Ok(p) = sanitize(&e.path) {
            assert!(
                p.rel
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "{:?}",
                p.rel
            );
            if let Kind::Symlink(target) | Kind::Hardlink(target) = &e.kind {
                if let Some(to) = resolve_link(&p.rel, target) {
                    assert!(
                        to.components().all(|c| matches!(c, Component::Normal(_))),
                        "{to:?}"
                    );
                }
            }
        }
        // Read the data through, in pieces.
        let mut left = r.data_remaining();
        while left > 0 {
            let Ok(chunk) = r.fill_data() else {
                return;
            };
            let n = chunk.len().min(4096);
            assert!(n > 0);
            r.consume_data(n);
            assert_eq!(r.data_remaining(), left - n as u64);
            left -= n as u64;
        }
    }
}

/// NVIDIA's boot-device pseudo-GPT (`bup::bootgpt`): the input's first 8
/// bytes give the device length, the rest is its last sectors.
pub fn boot_gpt(data: &[u8]) {
    use sysinstall::bup::bootgpt::{decode_entries, decode_header, entries_offset, header_offset};
    let Some((len, tail)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*len) % (1 << 40);
    let d = disk::SparseDisk::new(len, &[], tail);
    let mut img = d;
    let mut sector = disk::Image::read_at(&img, header_offset(len), gpt::SECTOR);
    disk::fix_header_crc(&mut sector);
    disk::Image::write_at(&mut img, header_offset(len), &sector);
    let Ok((h, at, bytes)) = decode_header(&sector, len) else {
        return;
    };
    assert!(at.checked_add(bytes).is_some_and(|e| e <= len));
    assert!(at >= entries_offset(len).min(at));
    let array = disk::Image::read_at(&img, at, bytes as usize);
    let Ok(parts) = decode_entries(&h, &array, len) else {
        return;
    };
    for p in &parts {
        assert!(p.size > 0 && p.size % 512 == 0 && p.offset % 512 == 0);
        assert!(p.offset.checked_add(p.size).is_some_and(|e| e <= len));
    }
}

/// Slot metadata (`bup::smd`) and VER (`bup::ver`).
pub fn smd_ver(data: &[u8]) {
    use sysinstall::bup::{smd::Smd, ver};
    let _ = ver::parse(data);
    let Ok(s) = Smd::decode(data) else {
        return;
    };
    let _ = (s.version(), s.flags(), s.maxslots(), s.redundancy());
    if let Ok(bytes) = s.encode() {
        assert_eq!(Smd::decode(&bytes).ok(), Some(s), "SMD does not round-trip");
    }
}

/// `bootinfo`: `bup::bootinfo::decode` of one copy, as is and with both CRCs
/// made right; a store that decodes re-encodes (as version 3) to one that
/// decodes to the same variables, and `initialize` over it keeps them,
/// resets the counter and writes copies that decode.
pub fn bootinfo(data: &[u8]) {
    use sysinstall::bup::bootinfo::{self, COPY_LEN};
    let mut copy = data.get(..COPY_LEN.min(data.len())).unwrap_or(&[]).to_vec();
    copy.resize(COPY_LEN, 0);
    let _ = bootinfo::decode(data);
    let mut fixed = copy.clone();
    bootinfo::seal(&mut fixed);
    for c in [&copy, &fixed] {
        let Ok(s) = bootinfo::decode(c) else { continue };
        assert!(s
            .vars
            .iter()
            .all(|(n, v)| !n.is_empty() && !n.contains(&0) && !v.contains(&0)));
        if let Ok(bytes) = bootinfo::encode(&s) {
            assert_eq!(bytes.len(), COPY_LEN);
            let again = bootinfo::decode(&bytes).expect("an encoded copy decodes");
            assert_eq!(
                (again.vars, again.sernum, again.flags),
                (s.vars.clone(), s.sernum, s.flags)
            );
        }
        if let Ok(p) = bootinfo::initialize([c, &[0u8; 1]]) {
            assert_eq!(p.kept, s.vars.len());
            for (_, w) in &p.writes {
                let n = bootinfo::decode(w).expect("initialize writes valid copies");
                assert_eq!((n.flags, n.failed_boots, n.vars.len()), (0, 0, p.kept));
            }
        }
    }
}

/// What `sources` asserts of a reference that parsed.
fn check_reference(r: &sysinstall::rootfs::oci::Reference) {
    use sysinstall::rootfs::oci::Reference;
    assert!(!r.host.is_empty() && !r.name.is_empty());
    assert!(
        r.tag.is_some() || r.digest.is_some(),
        "no tag and no digest"
    );
    assert!(r
        .tag
        .as_ref()
        .map_or(true, |t| !t.is_empty() && t.len() <= 128));
    assert!(!r.name.starts_with('/') && !r.name.ends_with('/') && !r.name.contains("//"));
    assert!(r
        .name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-/".contains(&c)));
    let base = r.api_base();
    assert!(base.starts_with(if r.plain_http { "http://" } else { "https://" }));
    assert!(base.ends_with(&format!("/v2/{}", r.name)));
    assert!(!r.manifest_ref().is_empty());
    // The canonical text parses back to the same reference.
    let host = if r.host.contains(':') {
        format!("[{}]", r.host)
    } else {
        r.host.clone()
    };
    let mut text = format!(
        "{}://{host}:{}/{}",
        if r.plain_http { "oci+http" } else { "oci" },
        r.port,
        r.name
    );
    if let Some(t) = &r.tag {
        text.push_str(&format!(":{t}"));
    }
    if r.digest.is_some() {
        text.push('@');
        text.push_str(&r.manifest_ref());
    }
    if let Some(t) = &r.title {
        text.push_str(&format!("#{t}"));
    }
    assert_eq!(Reference::parse(&text).as_ref(), Ok(r), "{text}");
}

/// The source parsers that read what a server or the environment says:
/// `oci://` references, manifests and indexes (and the layer choice),
/// `WWW-Authenticate` challenges, proxy settings and `no_proxy`.
pub fn sources(data: &[u8]) {
    use sysinstall::rootfs::oci::{self, Manifest, Reference};
    use sysinstall::rootfs::proxy::{NoProxy, Proxy};
    // tftp:// URLs: a host, a port, a file.
    let tftp_text = String::from_utf8_lossy(data);
    if let Some(Ok(u)) = sysinstall::rootfs::tftp::TftpUrl::parse(&format!("tftp://{tftp_text}")) {
        assert!(!u.host.is_empty() && u.port != 0 && !u.path.is_empty() && !u.path.ends_with('/'));
        assert_eq!(u.sidecar().path, format!("{}.sha256", u.path));
    }
    // Manifests: whatever parses, the choice is one of its own entries.
    for ct in [None, Some("application/vnd.oci.image.index.v1+json")] {
        match oci::parse_manifest(data, ct) {
            Ok(Manifest::Image(layers)) => {
                if let Ok(l) = oci::pick_layer(&layers, None) {
                    assert!(layers.contains(l));
                    if layers.len() > 1 {
                        assert!(oci::is_tarball_type(&l.media_type));
                    }
                }
                if let Some(t) = layers.iter().find_map(|l| l.title.clone()) {
                    let l = oci::pick_layer(&layers, Some(&t)).expect("a title present is found");
                    assert_eq!(l.title.as_deref(), Some(t.as_str()));
                }
                for l in &layers {
                    if let Ok(d) = l.sha256() {
                        assert_eq!(format!("sha256:{}", sysinstall::bytes::hex(&d)), l.digest);
                    }
                }
            }
            Ok(Manifest::Index(entries)) => {
                if let Ok(e) = oci::pick_manifest(&entries) {
                    assert!(entries.contains(e));
                }
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(data);
    // Challenges: schemes and parameter names are lower-case tokens.
    if let Ok(cs) = oci::parse_challenges(&text) {
        for c in &cs {
            assert!(!c.scheme.is_empty());
            assert!(!c
                .scheme
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b == b' ' || b == b','));
            for (n, _) in &c.params {
                assert!(!n.is_empty() && !n.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }
    }
    // References, as given and behind each scheme.
    for t in [
        text.to_string(),
        format!("oci://{text}"),
        format!("oci+http://{text}"),
    ] {
        if let Ok(r) = Reference::parse(&t) {
            assert!(Reference::is_oci(&t));
            check_reference(&r);
        }
    }
    // Proxy settings never show their credentials.
    if let Ok(p) = Proxy::parse(&text) {
        assert!(!p.host.is_empty());
        assert!(!p.shown().contains('@'));
    }
    let np = NoProxy::parse(&text);
    let _ = (
        np.bypass("registry.example", 443),
        np.bypass("10.1.2.3", 80),
        np.bypass("::1", 1),
    );
}

/// An HTTP response as a server (any server) sends it: the head and the
/// body, chunked, by length or to the end, through the client's own reader.
pub fn http_response(data: &[u8]) {
    use sysinstall::rootfs::http::{parse_content_range, read_response};
    const MAX: u64 = 1 << 16;
    let Ok((head, body)) = read_response(data, MAX) else {
        return;
    };
    assert!(body.len() as u64 <= MAX);
    assert!(
        body.len() <= data.len(),
        "a body longer than the bytes sent"
    );
    for (name, value) in &head.headers {
        assert_eq!(
            name,
            &name.to_ascii_lowercase(),
            "header name not lower-cased"
        );
        assert_eq!(name.trim(), name);
        assert_eq!(value.trim(), value);
        // Any header value may reach the range parser: it must not panic.
        let _ = parse_content_range(value);
    }
    let chunked = head
        .get("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if let (false, Some(len)) = (
        chunked,
        head.get("content-length")
            .and_then(|l| l.parse::<u64>().ok()),
    ) {
        assert_eq!(
            body.len() as u64,
            len.min(MAX),
            "a body not of its Content-Length"
        );
    }
}

/// A partition image (`image::read`): raw or Android sparse. Its pieces
/// account for every byte of the expanded image, and written into memory
/// and read back it verifies.
/// An image target in memory.
struct Mem(Vec<u8>);
impl sysinstall::image::Target for Mem {
    fn name(&self) -> String {
        "mem".into()
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let o = offset as usize;
        self.0[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
}

/// bmap files: whatever parses is consistent, and filtering an all-zero
/// image of its size either passes exactly the mapped bytes on or fails.
pub fn bmap(data: &[u8]) {
    use sysinstall::image::{self, bmap::Bmap, bmap::Filter, Writer};
    let Ok(map) = Bmap::parse(data) else {
        return;
    };
    let mut last = None;
    for r in &map.ranges {
        assert!(r.first <= r.last);
        assert!(last.map_or(true, |l| r.first > l));
        let (a, b) = map.span(r);
        assert!(a < b && b <= map.image_size);
        last = Some(r.last);
    }
    assert!(map.mapped_bytes() <= map.image_size);
    if map.image_size > 16 << 20 {
        return;
    }
    let zeros = vec![0u8; map.image_size as usize];
    let mut m = Mem(vec![0xAA; zeros.len()]);
    let mut t: [&mut dyn image::Target; 1] = [&mut m];
    let mut w = Writer::new(&mut t);
    let mut f = Filter::new(&map, &mut w);
    let Ok(shape) = image::read(&mut &zeros[..], &mut f) else {
        return;
    };
    if f.finish().is_ok() {
        let written = w.finish(shape).expect("a memory target syncs");
        let sum: u64 = written.extents.iter().map(|e| e.len).sum();
        assert_eq!(sum, map.mapped_bytes());
    }
}

pub fn image(data: &[u8]) {
    use sysinstall::image::{self, sparse, Measure, Target};
    // A sparse header may claim terabytes of fill: keep the target small.
    const MAX: u64 = 16 << 20;
    if let Some(h) = data
        .get(..sparse::FILE_HEADER_LEN)
        .and_then(|b| <&[u8; sparse::FILE_HEADER_LEN]>::try_from(b).ok())
        .and_then(|b| sparse::Header::parse(b).ok())
    {
        if h.expanded() > MAX {
            return;
        }
    }
    let Ok(shape) = image::read(&mut &data[..], &mut Measure) else {
        return;
    };
    assert_eq!(shape.data + shape.zero + shape.skipped, shape.size);
    assert_eq!(shape.head.len(), image::HEAD_LEN);
    let mut m = Mem(vec![0xAA; shape.size as usize]);
    let written = {
        let mut t: [&mut dyn Target; 1] = [&mut m];
        image::write(&mut &data[..], &mut t).expect("what measures also writes")
    };
    assert_eq!(written.shape, shape);
    image::verify(&mut m, &written).expect("what was written reads back");
    if shape.format == image::Format::Raw {
        assert_eq!(m.0, data, "a raw image is itself");
    }
}
