//! Hostile disks (issue 8): whatever the current GPT says, reading it,
//! probing its partitions, planning and planning the writes never panic,
//! never allocate what the disk claims, and never plan a write outside the
//! disk. Headers are re-CRC'd so the fuzzed fields reach the deep checks.

use crate::support::disk::part;
use proptest::prelude::*;
use std::io::{Cursor, Seek, SeekFrom, Write};
use sysinstall::gpt::{
    self, read::ReadError, write as gpt_write, GptHeader, MAX_ENTRY_ARRAY_BYTES,
};
use sysinstall::layout::PartitionTable;
use sysinstall::repartition::{self, Current};

const N: u64 = 4096;

fn table() -> PartitionTable {
    PartitionTable {
        sector_size: 512,
        disk_sectors: N,
        first_usable_lba: 34,
        last_usable_lba: N - 34,
        partitions: vec![part(1, "APP", 2048, N - 34), part(2, "kernel", 34, 2047)],
    }
}

fn valid_disk() -> (Cursor<Vec<u8>>, GptHeader) {
    let gpt = gpt_write::build(&table(), None).unwrap();
    let mut disk = Cursor::new(vec![0u8; (N * 512) as usize]);
    let plan = gpt_write::plan_writes(&mut disk, &gpt).unwrap();
    gpt_write::write(&mut disk, &plan, |_| Ok(())).unwrap();
    (disk, gpt.header)
}

#[derive(Debug, Clone)]
enum Damage {
    /// Flip a byte in the first or last 40 sectors.
    Byte {
        at_end: bool,
        offset: u16,
        value: u8,
    },
    /// Rewrite the primary (or backup) header with valid CRC and odd fields.
    Header {
        backup: bool,
        alternate_lba: u64,
        first_usable: u64,
        last_usable: u64,
        entry_lba: u64,
        entries: u32,
        entry_size: u32,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let lba = prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(33),
        Just(N - 33),
        Just(N - 1),
        Just(N),
        any::<u64>(),
        0..2 * N
    ];
    let count = prop_oneof![
        Just(0u32),
        Just(1),
        Just(128),
        Just(8192),
        Just(8193),
        any::<u32>()
    ];
    let size = prop_oneof![
        Just(0u32),
        Just(128),
        Just(256),
        Just(4096),
        Just(1 << 20),
        any::<u32>()
    ];
    prop_oneof![
        (any::<bool>(), 0u16..40 * 512, any::<u8>()).prop_map(|(at_end, offset, value)| {
            Damage::Byte {
                at_end,
                offset,
                value,
            }
        }),
        (
            any::<bool>(),
            lba.clone(),
            lba.clone(),
            lba.clone(),
            lba,
            count,
            size
        )
            .prop_map(
                |(
                    backup,
                    alternate_lba,
                    first_usable,
                    last_usable,
                    entry_lba,
                    entries,
                    entry_size,
                )| Damage::Header {
                    backup,
                    alternate_lba,
                    first_usable,
                    last_usable,
                    entry_lba,
                    entries,
                    entry_size,
                }
            ),
    ]
}

fn apply(disk: &mut Cursor<Vec<u8>>, base: &GptHeader, d: &Damage) {
    match d {
        Damage::Byte {
            at_end,
            offset,
            value,
        } => {
            let start = if *at_end { (N - 40) * 512 } else { 0 };
            disk.get_mut()[(start + u64::from(*offset)) as usize] = *value;
        }
        Damage::Header {
            backup,
            alternate_lba,
            first_usable,
            last_usable,
            entry_lba,
            entries,
            entry_size,
        } => {
            let h = GptHeader {
                my_lba: if *backup { N - 1 } else { 1 },
                alternate_lba: *alternate_lba,
                first_usable_lba: *first_usable,
                last_usable_lba: *last_usable,
                partition_entry_lba: *entry_lba,
                num_partition_entries: *entries,
                sizeof_partition_entry: *entry_size,
                ..base.clone()
            };
            disk.seek(SeekFrom::Start(h.my_lba * 512)).unwrap();
            disk.write_all(&h.encode()).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn hostile_tables_never_panic(damages in proptest::collection::vec(damage(), 1..4)) {
        let (mut disk, base) = valid_disk();
        for d in &damages {
            apply(&mut disk, &base, d);
        }
        let found = gpt::read::read(&mut disk, N);
        let wanted = table();
        match &found {
            Ok(Some(g)) => {
                let bytes = u64::from(g.header.num_partition_entries) * u64::from(g.header.sizeof_partition_entry);
                prop_assert!(bytes <= MAX_ENTRY_ARRAY_BYTES);
                prop_assert!(g.entries.len() as u64 <= u64::from(g.header.num_partition_entries));
                let contents = repartition::probe_partitions(&mut disk, g, N).unwrap();
                let p = repartition::plan(Current::Gpt(g, &contents), &wanted);
                let _ = repartition::render_table(&p, "fuzz");
                // Rebuilding from a hostile current table keeps GUIDs unique.
                let new = gpt_write::build(&wanted, Some(g)).unwrap();
                prop_assert_ne!(new.entries[0].1.unique_guid, new.entries[1].1.unique_guid);
            }
            Ok(None) => {
                let _ = repartition::plan(Current::None(&repartition::Content::Unknown), &wanted);
            }
            Err(ReadError::NoValidGpt { .. }) => {}
            Err(ReadError::Io(e)) => prop_assert!(false, "I/O error on an in-memory disk: {e}"),
        }
        // Planning the writes reads the damaged disk too; every write stays inside it.
        let new = gpt_write::build(&wanted, None).unwrap();
        let writes = gpt_write::plan_writes(&mut disk, &new).unwrap();
        for s in &writes.steps {
            prop_assert!(s.lba + s.sectors <= N, "{s:?}");
        }
    }

    #[test]
    fn probing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = sysinstall::probe::identify(&bytes);
    }
}
