//! Writing GPTs onto image files through the library (no root): the four
//! expected tables of tests/data, stale structures, idempotent rewrites and
//! refusals that leave the image untouched. sgdisk is the independent checker.

use crate::support::disk::*;
use crate::support::{data_dir, require_tools, sha256_file, sparse_image};
use std::path::Path;
use std::process::Command;
use sysinstall::disk;
use sysinstall::events::Events;
use sysinstall::exit::Changes;
use sysinstall::gpt::{self, read::GptCopy};

fn write_image(img: &Path, table: &sysinstall::layout::PartitionTable) -> disk::WrittenTable {
    let changes = Changes::new();
    let w = disk::partition(img, table, &changes, &Events::silent()).unwrap();
    assert!(changes.any());
    assert!(
        w.kernel.is_none() && w.nodes.is_empty(),
        "an image has no kernel view"
    );
    w
}

#[test]
fn the_four_expected_tables_write_and_read_back_equal() {
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(data.join("flash-layouts/expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    for file in files {
        let (table, rows) = expected_table(&file);
        let img = dir.path().join("disk.img");
        sparse_image(&img, table.disk_sectors * 512);
        let w = write_image(&img, &table);

        // Our reader, on the image as written.
        let mut f = std::fs::File::open(&img).unwrap();
        let back = gpt::read::read(&mut f, table.disk_sectors)
            .unwrap()
            .unwrap();
        assert_eq!(back, w.gpt);
        assert_eq!(back.copy, GptCopy::Primary);
        assert_eq!(back.other_copy_problem, None);
        assert_eq!(back.header.first_usable_lba, table.first_usable_lba);
        let got: Vec<Row> = back
            .entries
            .iter()
            .map(|(n, e)| {
                (
                    *n,
                    e.first_lba,
                    e.last_lba,
                    e.type_guid.sgdisk_code().unwrap().to_owned(),
                    e.name.clone(),
                )
            })
            .collect();
        assert_eq!(got, rows, "{}", file.display());
        assert!(back.entries.iter().all(|(_, e)| e.attributes == 0));

        // sgdisk, independently.
        assert_sgdisk_agrees(&img, &rows, table.first_usable_lba, table.disk_sectors);
        // The image stays sparse: only the GPT sectors were written.
        use std::os::unix::fs::MetadataExt;
        let used = std::fs::metadata(&img).unwrap().blocks() * 512;
        assert!(
            used <= 1 << 20,
            "{}: {used} bytes allocated",
            file.display()
        );
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn rewriting_an_unchanged_table_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = 65536;
    sparse_image(&img, n * 512);
    let t = small_table(n);
    write_image(&img, &t);
    let before = sha256_file(&img);
    write_image(&img, &t);
    assert_eq!(
        sha256_file(&img),
        before,
        "open GUIDs and the disk GUID are kept"
    );

    // Moving one partition changes only its GUID.
    let mut moved = t.clone();
    moved.partitions[2].first_lba = 9000;
    moved.partitions[2].last_lba = 9255;
    let old = gpt::read::read(&mut std::fs::File::open(&img).unwrap(), n)
        .unwrap()
        .unwrap();
    let new = write_image(&img, &moved).gpt;
    let guid = |g: &gpt::read::DiskGpt, num: u32| {
        g.entries
            .iter()
            .find(|(k, _)| *k == num)
            .unwrap()
            .1
            .unique_guid
    };
    assert_ne!(guid(&old, 3), guid(&new, 3));
    assert_eq!(guid(&old, 2), guid(&new, 2));
    assert_eq!(
        guid(&new, 1).to_string(),
        "0D1BE901-1111-4222-8333-444455556666"
    );
}

#[test]
fn a_stale_backup_from_a_smaller_image_is_wiped() {
    require_tools(&["sgdisk"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let old_n: u64 = 32768;
    let n: u64 = 65536;
    // Another tool partitions a 16 MiB image, which then grows to 32 MiB.
    sparse_image(&img, old_n * 512);
    let o = Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:+4M", "-c", "1:old"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(n * 512)
        .unwrap();
    let stale = |img: &Path| {
        let bytes = std::fs::read(img).unwrap();
        bytes[((old_n - 1) * 512) as usize..][..8].to_vec()
    };
    assert_eq!(stale(&img), b"EFI PART");

    let t = small_table(n);
    write_image(&img, &t);
    assert_eq!(stale(&img), [0u8; 8], "the old backup header is gone");
    assert_sgdisk_agrees(&img, &rows_of(&t), 40, n);
}

#[test]
fn the_gap_before_the_first_usable_lba_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = 65536u64;
    // Garbage everywhere in the first 64 KiB, e.g. an old 2 MiB primary_gpt area.
    std::fs::write(&img, vec![0x5Au8; 65536]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(n * 512)
        .unwrap();
    write_image(&img, &small_table(n));
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes[34 * 512..40 * 512].iter().all(|&b| b == 0));
    assert!(
        bytes[40 * 512..65536].iter().all(|&b| b == 0x5A),
        "partition data untouched"
    );
    // The partition records are replaced (stale DOS records would make a
    // hybrid MBR); the boot-code area, where the install journal lives, is kept.
    assert_eq!(&bytes[440..512], &gpt::protective_mbr(n)[440..]);
    assert!(bytes[..440].iter().all(|&b| b == 0x5A));
}

fn refused(img: &Path, table: &sysinstall::layout::PartitionTable) -> String {
    let before = sha256_file(img);
    let changes = Changes::new();
    let err = disk::partition(img, table, &changes, &Events::silent()).unwrap_err();
    assert!(!changes.any(), "nothing may be marked changed");
    assert_eq!(sha256_file(img), before, "the image must be unchanged");
    format!("{err:#}")
}

#[test]
fn refusals_leave_the_image_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = 65536u64;
    sparse_image(&img, n * 512);
    write_image(&img, &small_table(n));

    let mut other_size = small_table(n * 2);
    other_size.partitions.retain(|p| p.number != 1);
    let e = refused(&img, &other_size);
    assert!(
        e.contains("placed for a disk of 131072 sectors, but"),
        "{e}"
    );

    let mut overlap = small_table(n);
    overlap.partitions[2].first_lba = 8000;
    let e = refused(&img, &overlap);
    assert!(
        e.contains("'kernel' (40..=8231) and 'kernel-dtb' (8000..=9255) overlap"),
        "{e}"
    );

    let mut long = small_table(n);
    long.partitions[1].name = "a_name_that_is_longer_than_thirty_six_units".into();
    assert!(refused(&img, &long).contains("more than 36"));

    let mut dup = small_table(n);
    dup.partitions[1].number = 6;
    assert!(refused(&img, &dup).contains("both have number 6"));

    let odd = dir.path().join("odd.img");
    std::fs::write(&odd, vec![0u8; 1000]).unwrap();
    let e = refused(&odd, &small_table(n));
    assert!(e.contains("not a whole number of 512-byte sectors"), "{e}");
}

#[test]
fn inspect_plans_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = 65536u64;
    sparse_image(&img, n * 512);
    let t = small_table(n);
    let before = sha256_file(&img);
    let p = disk::inspect(&img, &t).unwrap();
    assert_eq!(sha256_file(&img), before);
    assert!(!p.plan.in_place);
    assert!(matches!(p.found, disk::Found::Nothing(_)));
    assert_eq!(p.gpt.entries.len(), 4);

    write_image(&img, &t);
    let p = disk::inspect(&img, &t).unwrap();
    assert!(p.plan.in_place, "{:#?}", p.plan);

    // What inspect returns cannot be written: it was neither checked nor claimed.
    let changes = Changes::new();
    let err = disk::write(p, &disk::DiskEnv::default(), &changes, &Events::silent()).unwrap_err();
    assert!(err.to_string().contains("inspected, not prepared"), "{err}");
    assert!(!changes.any());
}

#[test]
fn the_install_journal_survives_repartitioning() {
    use sysinstall::install::journal::{self, InstallMode, Record};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let n = 65536u64;
    sparse_image(&img, n * 512);
    write_image(&img, &small_table(n));
    let record = Record::start(
        InstallMode::Initial,
        0,
        journal::content_id(&["rootfs", "layout"]),
        1_700_000_000,
    )
    .unwrap();
    let mut bytes = std::fs::read(&img).unwrap();
    journal::store(&mut bytes[..512], Some(&record));
    std::fs::write(&img, &bytes).unwrap();

    let mut moved = small_table(n);
    moved.partitions.retain(|p| p.name != "esp");
    write_image(&img, &moved);
    let lba0 = std::fs::read(&img).unwrap()[..512].to_vec();
    assert_eq!(Record::decode(&lba0), Some(record));
    assert_sgdisk_agrees_if_present(&img, &moved);
}

fn assert_sgdisk_agrees_if_present(img: &Path, t: &sysinstall::layout::PartitionTable) {
    assert_sgdisk_agrees(img, &rows_of(t), t.first_usable_lba, t.disk_sectors);
}

#[test]
fn the_sparse_fingerprint_sees_every_write() {
    // The "unchanged" checks of big sparse images rely on this.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, 1 << 30);
    let a = fingerprint(&img);
    assert_eq!(fingerprint(&img), a);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &[0u8; 512], 512 << 20).unwrap();
    f.sync_all().unwrap();
    let b = fingerprint(&img);
    assert_ne!(b, a, "zeros written into a hole");
    std::os::unix::fs::FileExt::write_at(&f, &[1u8], (512 << 20) + 7).unwrap();
    assert_ne!(fingerprint(&img), b, "one byte in data");
}
