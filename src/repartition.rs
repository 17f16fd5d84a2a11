//! Planning: what writing a layout's partition table onto a disk would change,
//! computed before anything is written.
//!
//! Partitions are matched by **name**: NVIDIA's boot chain, tegra-sysinstall
//! and this installer all find partitions by name, and layouts renumber them
//! between releases. For each partition of either table the plan says:
//!
//! * **keep**: same first and last sector; its data survives (a different
//!   number, type or fixed unique GUID is listed, and means the table must
//!   still be rewritten);
//! * **resize**: same first sector, other last sector; growing keeps the data
//!   (the filesystem is not grown), shrinking cuts it off;
//! * **move**: another first sector; the data is not moved, so it is lost;
//! * **create**: only in the layout;
//! * **delete**: only on the disk; its data is lost.
//!
//! What a partition holds now is probed read-only from its first 64 KiB
//! ([`crate::probe`]: ext2/3/4, vfat, swap, LUKS, all zeros), so the plan can
//! say which filesystems would be lost. "In place" means partitioning can
//! be skipped: every partition kept unchanged, nothing deleted, and a healthy
//! GPT (both copies valid and equal, the backup at the last LBA, 128 entries,
//! the layout's first usable LBA). Unique GUIDs the layout leaves open are not
//! a difference; NVIDIA's last usable LBA (`N − 33`) is reported but accepted.

#![deny(clippy::indexing_slicing)]

use crate::gpt::read::{DiskGpt, GptCopy};
use crate::gpt::{GptEntry, ENTRY_COUNT, SECTOR};
use crate::guid::Guid;
use crate::layout::{Partition, PartitionTable};
pub use crate::probe::Content;

mod render;
use crate::probe::{identify, PROBE_BYTES};
pub use render::render_table;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

/// What happens to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionAction {
    /// Stays where it is.
    Keep,
    /// Only in the layout.
    Create,
    /// Starts elsewhere.
    Move,
    /// Same start, other end.
    Resize,
    /// Only on the disk.
    Delete,
}

impl PartitionAction {
    fn as_str(self) -> &'static str {
        match self {
            PartitionAction::Keep => "keep",
            PartitionAction::Create => "create",
            PartitionAction::Move => "move",
            PartitionAction::Resize => "resize",
            PartitionAction::Delete => "delete",
        }
    }
}

fn has_data(c: &Content) -> bool {
    !matches!(c, Content::Empty)
}

/// [`probe_partitions_in`] on a disk of 512-byte sectors.
pub fn probe_partitions<R: Read + Seek>(
    dev: &mut R,
    gpt: &DiskGpt,
    disk_sectors: u64,
) -> io::Result<BTreeMap<u32, Content>> {
    probe_partitions_in(dev, gpt, disk_sectors, SECTOR as u64)
}

/// Reads the first [`PROBE_BYTES`] of every partition of `gpt` (fewer for a
/// smaller partition) on a disk of `disk_sectors` sectors of `sector_size`
/// bytes, and tells what each holds, by partition number; partitions that
/// do not lie on the disk are left out.
pub fn probe_partitions_in<R: Read + Seek>(
    dev: &mut R,
    gpt: &DiskGpt,
    disk_sectors: u64,
    sector_size: u64,
) -> io::Result<BTreeMap<u32, Content>> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; PROBE_BYTES];
    for (number, e) in &gpt.entries {
        // A partition (partly) outside the disk is not probed: its content
        // stays unknown, and counts as data.
        if e.last_lba < e.first_lba || e.last_lba >= disk_sectors {
            continue;
        }
        let content = {
            let len = (e.last_lba - e.first_lba + 1)
                .saturating_mul(sector_size)
                .min(PROBE_BYTES as u64) as usize;
            let chunk = buf.get_mut(..len).unwrap_or_default();
            let at = e.first_lba.checked_mul(sector_size).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "partition start overflows")
            })?;
            dev.seek(SeekFrom::Start(at))?;
            dev.read_exact(chunk)?;
            identify(chunk)
        };
        out.insert(*number, content);
    }
    Ok(out)
}

/// Where a partition is (or would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extent {
    /// GPT entry number.
    pub number: u32,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Type GUID.
    pub type_guid: Guid,
    /// Unique GUID: the current one, or the one the layout fixes (`None`:
    /// random when written).
    pub unique_guid: Option<Guid>,
}

impl Extent {
    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba
            .saturating_sub(self.first_lba)
            .saturating_add(1)
    }

    fn of_entry(number: u32, e: &GptEntry) -> Extent {
        Extent {
            number,
            first_lba: e.first_lba,
            last_lba: e.last_lba,
            type_guid: e.type_guid,
            unique_guid: Some(e.unique_guid),
        }
    }

    fn of_partition(p: &Partition) -> Extent {
        Extent {
            number: p.number,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            type_guid: p.type_guid,
            unique_guid: p.unique_guid,
        }
    }
}

/// The plan for one partition name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionPlan {
    /// Partition name.
    pub name: String,
    /// What happens to it.
    pub action: PartitionAction,
    /// Where it is now.
    pub current: Option<Extent>,
    /// Where the layout puts it.
    pub wanted: Option<Extent>,
    /// Other differences of a kept or resized partition ("number 6 → 7",
    /// "type", "unique GUID").
    pub changes: Vec<String>,
    /// What it holds now (probed), when it exists now.
    pub content: Option<Content>,
    /// True when what it holds now does not survive.
    pub data_lost: bool,
}

/// The state of the GPT on the disk now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum CurrentTable {
    /// No GPT.
    None,
    /// A GPT was read.
    Gpt {
        /// The copy it was read from.
        copy: GptCopy,
        /// Used entries.
        partitions: usize,
        /// What is wrong with the other copy, if anything.
        problem: Option<String>,
    },
    /// Neither copy is valid.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Disk size in sectors.
    pub disk_sectors: u64,
    /// Bytes of a sector (the unit of every LBA here).
    #[serde(skip)]
    pub sector_size: u64,
    /// The GPT on the disk now.
    pub current: CurrentTable,
    /// What the start of the disk holds, when there is no GPT.
    pub disk_content: Option<Content>,
    /// Per partition: wanted ones in number order, then deleted ones.
    pub partitions: Vec<PartitionPlan>,
    /// Header differences that require rewriting the table.
    pub header_changes: Vec<String>,
    /// Remarks that do not require rewriting.
    pub notes: Vec<String>,
    /// True when the layout is already in place and partitioning can be skipped.
    pub in_place: bool,
}

impl Plan {
    /// Partitions whose data would be lost.
    pub fn data_lost(&self) -> impl Iterator<Item = &PartitionPlan> {
        self.partitions.iter().filter(|p| p.data_lost)
    }
}

/// What is on the disk now, as the planner needs it.
#[derive(Debug, Clone, Copy)]
pub enum Current<'a> {
    /// No GPT; the content of the disk's first bytes.
    None(&'a Content),
    /// A GPT and the probed content of its partitions by number.
    Gpt(&'a DiskGpt, &'a BTreeMap<u32, Content>),
    /// An unreadable GPT.
    Unreadable(&'a str),
}

/// Compares the disk's current state with the wanted table.
pub fn plan(current: Current<'_>, wanted: &PartitionTable) -> Plan {
    let n = wanted.disk_sectors;
    let mut header_changes = Vec::new();
    let mut notes = Vec::new();
    let (entries, contents, state, disk_content): (&[(u32, GptEntry)], _, _, _) = match current {
        Current::None(c) => {
            header_changes.push("there is no GPT".to_owned());
            (&[], None, CurrentTable::None, Some(c.clone()))
        }
        Current::Unreadable(reason) => {
            header_changes.push(format!("the GPT is unreadable: {reason}"));
            (
                &[],
                None,
                CurrentTable::Unreadable {
                    reason: reason.to_owned(),
                },
                None,
            )
        }
        Current::Gpt(g, contents) => {
            check_header(g, wanted, &mut header_changes, &mut notes);
            (
                g.entries.as_slice(),
                Some(contents),
                CurrentTable::Gpt {
                    copy: g.copy,
                    partitions: g.entries.len(),
                    problem: g.other_copy_problem.clone(),
                },
                None,
            )
        }
    };
    let content_of = |number: u32| contents.and_then(|c| c.get(&number)).cloned();

    let mut used = vec![false; entries.len()];
    let mut wanted_sorted: Vec<&Partition> = wanted.partitions.iter().collect();
    wanted_sorted.sort_by_key(|p| p.number);
    let mut partitions = Vec::new();
    for p in wanted_sorted {
        // Same name; with duplicates on disk prefer the same number, then the same start.
        let candidates: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(i, (_, e))| e.name == p.name && !used.get(*i).copied().unwrap_or(true))
            .map(|(i, _)| i)
            .collect();
        let pick = candidates
            .iter()
            .copied()
            .find(|&i| entries.get(i).is_some_and(|(num, _)| *num == p.number))
            .or_else(|| {
                candidates.iter().copied().find(|&i| {
                    entries
                        .get(i)
                        .is_some_and(|(_, e)| e.first_lba == p.first_lba)
                })
            })
            .or_else(|| candidates.first().copied());
        let want = Extent::of_partition(p);
        let plan = match pick.and_then(|i| entries.get(i).map(|e| (i, e))) {
            None => PartitionPlan {
                name: p.name.clone(),
                action: PartitionAction::Create,
                current: None,
                wanted: Some(want),
                changes: Vec::new(),
                content: None,
                data_lost: false,
            },
            Some((i, (num, e))) => {
                if let Some(u) = used.get_mut(i) {
                    *u = true;
                }
                let cur = Extent::of_entry(*num, e);
                let content = content_of(*num);
                let has_data = content.as_ref().map_or(true, has_data);
                let action = if cur.first_lba != want.first_lba {
                    PartitionAction::Move
                } else if cur.last_lba != want.last_lba {
                    PartitionAction::Resize
                } else {
                    PartitionAction::Keep
                };
                let data_lost = has_data
                    && match action {
                        PartitionAction::Move => true,
                        PartitionAction::Resize => want.last_lba < cur.last_lba,
                        _ => false,
                    };
                let mut changes = Vec::new();
                if cur.number != want.number {
                    changes.push(format!("number {} → {}", cur.number, want.number));
                }
                if cur.type_guid != want.type_guid {
                    changes.push(format!("type {} → {}", cur.type_guid, want.type_guid));
                }
                if let Some(g) = want.unique_guid.filter(|g| Some(*g) != cur.unique_guid) {
                    changes.push(format!("unique GUID → {g}"));
                }
                PartitionPlan {
                    name: p.name.clone(),
                    action,
                    current: Some(cur),
                    wanted: Some(want),
                    changes,
                    content,
                    data_lost,
                }
            }
        };
        partitions.push(plan);
    }
    for (i, (num, e)) in entries.iter().enumerate() {
        if used.get(i).copied().unwrap_or(true) {
            continue;
        }
        let content = content_of(*num);
        partitions.push(PartitionPlan {
            name: e.name.clone(),
            action: PartitionAction::Delete,
            current: Some(Extent::of_entry(*num, e)),
            wanted: None,
            changes: Vec::new(),
            data_lost: content.as_ref().map_or(true, has_data),
            content,
        });
    }
    let in_place = header_changes.is_empty()
        && partitions
            .iter()
            .all(|p| p.action == PartitionAction::Keep && p.changes.is_empty());
    Plan {
        disk_sectors: n,
        sector_size: wanted.sector_size,
        current: state,
        disk_content,
        partitions,
        header_changes,
        notes,
        in_place,
    }
}

fn check_header(
    g: &DiskGpt,
    wanted: &PartitionTable,
    changes: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let h = &g.header;
    let n = wanted.disk_sectors;
    if g.copy == GptCopy::Backup {
        changes.push("the primary GPT is damaged (read from the backup)".to_owned());
    }
    if let Some(p) = &g.other_copy_problem {
        changes.push(p.clone());
    }
    if h.num_partition_entries != ENTRY_COUNT {
        changes.push(format!(
            "the table holds {} entries, not {ENTRY_COUNT}",
            h.num_partition_entries
        ));
    }
    if h.first_usable_lba != wanted.first_usable_lba {
        changes.push(format!(
            "first usable LBA is {}, the layout's is {}",
            h.first_usable_lba, wanted.first_usable_lba
        ));
    }
    if h.last_usable_lba != wanted.last_usable_lba {
        // NVIDIA's tools write N − 33 (docs/spec/flash-layout.md §2.1, §5.4); a table flashed
        // by them is otherwise what we would write.
        if h.last_usable_lba == n.saturating_sub(33) {
            notes.push(format!(
                "last usable LBA is {} (N − 33, as NVIDIA's tools write it); a rewrite would say {}",
                h.last_usable_lba, wanted.last_usable_lba
            ));
        } else {
            changes.push(format!(
                "last usable LBA is {}, should be {}",
                h.last_usable_lba, wanted.last_usable_lba
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::gpt::{GptHeader, HEADER_SIZE, REVISION_1_0};
    use crate::guid::EFI_SYSTEM;

    const N: u64 = 100_000;

    fn part(number: u32, name: &str, first: u64, last: u64) -> Partition {
        Partition::basic_data(number, name, first, last)
    }

    fn wanted() -> PartitionTable {
        PartitionTable {
            sector_size: 512,
            disk_sectors: N,
            first_usable_lba: 40,
            last_usable_lba: N - 34,
            partitions: vec![
                part(1, "APP", 10_000, 49_999),
                part(2, "kernel", 40, 4_999),
                part(3, "DATA", 50_000, N - 34),
            ],
        }
    }

    fn entry(name: &str, first: u64, last: u64) -> GptEntry {
        GptEntry::basic_data(name, first, last)
    }

    fn disk(entries: Vec<(u32, GptEntry)>) -> DiskGpt {
        DiskGpt {
            header: GptHeader {
                revision: REVISION_1_0,
                header_size: HEADER_SIZE,
                my_lba: 1,
                alternate_lba: N - 1,
                first_usable_lba: 40,
                last_usable_lba: N - 34,
                disk_guid: Guid::random().unwrap(),
                partition_entry_lba: 2,
                num_partition_entries: 128,
                sizeof_partition_entry: 128,
                partition_entry_array_crc32: 0,
            },
            entries,
            copy: GptCopy::Primary,
            other_copy_problem: None,
        }
    }

    fn same_as_wanted() -> DiskGpt {
        disk(vec![
            (1, entry("APP", 10_000, 49_999)),
            (2, entry("kernel", 40, 4_999)),
            (3, entry("DATA", 50_000, N - 34)),
        ])
    }

    fn ext4(label: &str) -> Content {
        Content::Ext(crate::probe::ExtSuperblock {
            kind: "ext4",
            uuid: Guid::NIL,
            label: label.into(),
            last_mounted: String::new(),
            size_bytes: 1 << 20,
            ..Default::default()
        })
    }

    fn action(p: &Plan, name: &str) -> (PartitionAction, bool) {
        let x = p.partitions.iter().find(|x| x.name == name).unwrap();
        (x.action, x.data_lost)
    }

    #[test]
    fn identical_table_is_in_place_whatever_the_open_guids() {
        let g = same_as_wanted();
        let contents = BTreeMap::from([(1, ext4("APP")), (3, ext4("DATA"))]);
        let p = plan(Current::Gpt(&g, &contents), &wanted());
        assert!(p.in_place, "{p:#?}");
        assert!(p
            .partitions
            .iter()
            .all(|x| x.action == PartitionAction::Keep));
        assert_eq!(p.data_lost().count(), 0);
        assert!(render_table(&p, "/dev/x").contains("already in place"));
    }

    #[test]
    fn nvidia_last_usable_is_a_note_not_a_change() {
        let mut g = same_as_wanted();
        g.header.last_usable_lba = N - 33;
        let p = plan(Current::Gpt(&g, &BTreeMap::new()), &wanted());
        assert!(p.in_place);
        assert!(p.notes[0].contains("N − 33"), "{:?}", p.notes);
        g.header.last_usable_lba = N - 100;
        assert!(!plan(Current::Gpt(&g, &BTreeMap::new()), &wanted()).in_place);
    }

    #[test]
    fn unhealthy_tables_are_not_in_place() {
        for edit in [
            (|g: &mut DiskGpt| g.copy = GptCopy::Backup) as fn(&mut DiskGpt),
            |g| g.other_copy_problem = Some("backup GPT differs from the primary".into()),
            |g| g.header.num_partition_entries = 64,
            |g| g.header.first_usable_lba = 34,
        ] {
            let mut g = same_as_wanted();
            edit(&mut g);
            let p = plan(Current::Gpt(&g, &BTreeMap::new()), &wanted());
            assert!(!p.in_place);
            assert_eq!(p.header_changes.len(), 1, "{:?}", p.header_changes);
            assert!(p
                .partitions
                .iter()
                .all(|x| x.action == PartitionAction::Keep));
        }
    }

    #[test]
    fn each_action_and_what_is_lost() {
        let g = disk(vec![
            (1, entry("APP", 10_000, 39_999)),   // grows: kept
            (2, entry("kernel", 34, 4_999)),     // moves: lost
            (4, entry("DATA", 50_000, N - 34)),  // renumbered: kept
            (5, entry("UDA", 60_000, 70_000)),   // not in the layout: lost
            (6, entry("spare", 80_000, 80_100)), // deleted, but empty
        ]);
        let contents = BTreeMap::from([
            (1, ext4("APP")),
            (2, Content::Unknown),
            (4, ext4("DATA")),
            (5, Content::Vfat),
            (6, Content::Empty),
        ]);
        let mut w = wanted();
        w.partitions.push(part(7, "LOGS", 5_000, 9_999));
        let p = plan(Current::Gpt(&g, &contents), &w);
        assert!(!p.in_place);
        assert_eq!(action(&p, "APP"), (PartitionAction::Resize, false));
        assert_eq!(action(&p, "kernel"), (PartitionAction::Move, true));
        assert_eq!(action(&p, "DATA"), (PartitionAction::Keep, false));
        assert_eq!(action(&p, "LOGS"), (PartitionAction::Create, false));
        assert_eq!(action(&p, "UDA"), (PartitionAction::Delete, true));
        assert_eq!(action(&p, "spare"), (PartitionAction::Delete, false));
        let data = p.partitions.iter().find(|x| x.name == "DATA").unwrap();
        assert_eq!(data.changes, ["number 4 → 3"]);
        // Order: wanted by number, then deletions.
        let names: Vec<_> = p.partitions.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["APP", "kernel", "DATA", "LOGS", "UDA", "spare"]);

        let t = render_table(&p, "/dev/mmcblk0");
        assert!(
            t.contains("data is lost on kernel (unknown data), UDA (vfat)."),
            "{t}"
        );
        assert!(t.contains("6 partitions change"), "{t}");
        let app = t.lines().find(|l| l.contains(" APP ")).unwrap();
        assert!(app.starts_with("resize"), "{app}");
        assert!(
            app.contains("kept (now 10000..39999; filesystem not grown)"),
            "{app}"
        );
    }

    #[test]
    fn shrinking_loses_data_and_unprobed_partitions_count_as_data() {
        let g = disk(vec![(1, entry("APP", 10_000, 60_000))]);
        let p = plan(Current::Gpt(&g, &BTreeMap::new()), &wanted());
        assert_eq!(action(&p, "APP"), (PartitionAction::Resize, true));
        let contents = BTreeMap::from([(1, Content::Empty)]);
        let p = plan(Current::Gpt(&g, &contents), &wanted());
        assert_eq!(
            action(&p, "APP"),
            (PartitionAction::Resize, false),
            "nothing to lose"
        );
    }

    #[test]
    fn type_and_fixed_guid_differences_need_a_rewrite() {
        let g = same_as_wanted();
        let mut w = wanted();
        w.partitions[1].type_guid = EFI_SYSTEM;
        w.partitions[0].unique_guid =
            Some(Guid::parse("11111111-2222-3333-4444-555555555555").unwrap());
        let p = plan(Current::Gpt(&g, &BTreeMap::new()), &w);
        assert!(!p.in_place);
        assert_eq!(action(&p, "kernel"), (PartitionAction::Keep, false));
        let k = p.partitions.iter().find(|x| x.name == "kernel").unwrap();
        assert!(k.changes[0].starts_with("type EBD0A0A2"), "{:?}", k.changes);
        let a = p.partitions.iter().find(|x| x.name == "APP").unwrap();
        assert_eq!(
            a.changes,
            ["unique GUID → 11111111-2222-3333-4444-555555555555"]
        );
        // The same fixed GUID already on disk is no difference.
        let mut g2 = same_as_wanted();
        g2.entries[0].1.unique_guid = w.partitions[0].unique_guid.unwrap();
        let mut w2 = wanted();
        w2.partitions[0].unique_guid = w.partitions[0].unique_guid;
        assert!(plan(Current::Gpt(&g2, &BTreeMap::new()), &w2).in_place);
    }

    #[test]
    fn duplicate_names_on_disk_pair_by_number_then_start() {
        let g = disk(vec![
            (1, entry("APP", 10_000, 49_999)),
            (2, entry("kernel", 40, 4_999)),
            (3, entry("DATA", 50_000, N - 34)),
            (9, entry("APP", 5_000, 9_999)),
        ]);
        let p = plan(Current::Gpt(&g, &BTreeMap::new()), &wanted());
        assert_eq!(action(&p, "APP"), (PartitionAction::Keep, false));
        let extra = p
            .partitions
            .iter()
            .find(|x| x.action == PartitionAction::Delete)
            .unwrap();
        assert_eq!(extra.current.as_ref().unwrap().number, 9);
    }

    #[test]
    fn blank_and_unreadable_disks() {
        let p = plan(Current::None(&Content::Empty), &wanted());
        assert!(!p.in_place);
        assert!(p
            .partitions
            .iter()
            .all(|x| x.action == PartitionAction::Create));
        assert_eq!(p.data_lost().count(), 0);
        let t = render_table(&p, "disk.img");
        assert!(
            t.contains("Current table: none (the disk starts with: empty)"),
            "{t}"
        );
        assert!(t.contains("no data is lost"), "{t}");

        let p = plan(Current::None(&ext4("old")), &wanted());
        assert!(render_table(&p, "disk.img")
            .contains("The disk holds ext4 'old' without a GPT; it is lost."));

        let p = plan(
            Current::Unreadable("no valid GPT (primary: x; backup: y)"),
            &wanted(),
        );
        assert!(!p.in_place);
        assert!(p.header_changes[0].contains("unreadable"));
    }

    #[test]
    fn json_has_stable_fields() {
        let g = same_as_wanted();
        let contents = BTreeMap::from([(1, ext4("APP"))]);
        let p = plan(Current::Gpt(&g, &contents), &wanted());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["in_place"], true);
        assert_eq!(v["current"]["state"], "gpt");
        assert_eq!(v["current"]["copy"], "primary");
        assert_eq!(v["partitions"][0]["action"], "keep");
        assert_eq!(v["partitions"][0]["content"]["type"], "ext");
        assert_eq!(v["partitions"][0]["content"]["kind"], "ext4");
        assert_eq!(v["partitions"][0]["content"]["label"], "APP");
        assert_eq!(
            v["partitions"][0]["wanted"]["unique_guid"],
            serde_json::Value::Null
        );
        assert_eq!(v["partitions"][1]["content"], serde_json::Value::Null);
    }

    fn ext_image(incompat: u32, compat: u32, label: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[1024 + 0x5C..1024 + 0x60].copy_from_slice(&compat.to_le_bytes());
        b[1024 + 0x60..1024 + 0x64].copy_from_slice(&incompat.to_le_bytes());
        b[1024 + 0x68] = 0xAB;
        b[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label);
        b
    }

    #[test]
    fn probing_reads_each_partition_and_stays_inside_the_disk() {
        let mut img = vec![0u8; 200 * 512];
        let e = ext_image(0x40, 0, b"boot");
        img[100 * 512..100 * 512 + 4096].copy_from_slice(&e);
        let g = disk(vec![
            (1, entry("a", 100, 199)),
            (2, entry("b", 50, 50)),     // one sector, zero
            (3, entry("c", 150, 1_000)), // past the end
        ]);
        let got = probe_partitions(&mut std::io::Cursor::new(img), &g, 200).unwrap();
        assert_eq!(got[&1].describe(), "ext4 'boot'");
        assert_eq!(got[&2], Content::Empty);
        assert!(!got.contains_key(&3), "outside the disk: not probed");
    }
}
