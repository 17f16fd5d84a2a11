//! TNSPECs: splitting, matching, the compatible spec, and choosing the
//! payload entries for a board (docs/spec/bup-format.md §2.1–2.8).
//!
//! A TNSPEC is `BOARDID-FAB-BOARDSKU-BOARDREV-FUSELEVEL-CHIPREV-MACHINE-BOOTDEV`.
//! MACHINE may contain `-`, so the split takes the *last* dash after field 6.
//! Matching treats an empty field on either side as a wildcard. The
//! compatible spec widens a board's TNSPEC the way NVIDIA's flashing tools
//! group board revisions, so one payload serves a family of boards.
//!
//! Specs are compared as bytes, exactly as REF compares them.

#![deny(clippy::indexing_slicing)]

use super::payload::PayloadEntry;
use serde::Serialize;

/// Number of fields in a full TNSPEC.
pub const FIELDS: usize = 8;
/// Index of MACHINE, the one field that may contain `-`.
const MACHINE: usize = 6;
/// Index of BOOTDEV.
const BOOTDEV: usize = 7;
/// op_mode of pre-production (non-fused) binaries, never selected (§2.6).
pub const OP_MODE_PREPRODUCTION: u32 = 1;

/// Splits a spec into at most eight fields (REF's `spec_split`, §2.3).
/// An empty spec has no fields.
pub fn split(spec: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::with_capacity(FIELDS);
    let mut rest = spec;
    if rest.is_empty() {
        return fields;
    }
    for i in 0..FIELDS {
        let dash = if i == MACHINE {
            rest.iter().rposition(|&b| b == b'-')
        } else {
            rest.iter().position(|&b| b == b'-')
        };
        match dash {
            None => {
                fields.push(rest);
                return fields;
            }
            Some(d) => {
                fields.push(rest.get(..d).unwrap_or(&[]));
                rest = rest.get(d + 1..).unwrap_or(&[]);
            }
        }
    }
    fields
}

/// True when an entry's spec applies to a system spec (REF's `specs_match`,
/// §2.4). Not symmetric: only the system's `internal` BOOTDEV matches an
/// entry's `mmcblk0pN`.
pub fn specs_match(entry: &[u8], system: &[u8]) -> bool {
    let e = split(entry);
    let s = split(system);
    if e.is_empty() {
        return true;
    }
    if e.len() != s.len() {
        return false;
    }
    e.iter().zip(&s).enumerate().all(|(i, (ef, sf))| {
        ef.is_empty()
            || sf.is_empty()
            || (i == BOOTDEV && *sf == b"internal" && ef.len() > 8 && ef.starts_with(b"mmcblk0p"))
            || ef == sf
    })
}

/// The compatible spec of a full TNSPEC (REF's `generate_compat_spec`, §2.5):
/// fields 0–6 with the board family's wildcards applied, BOOTDEV empty.
/// `None` unless the TNSPEC has eight fields and a four-character BOARDID.
pub fn compat_spec(tnspec: &[u8]) -> Option<Vec<u8>> {
    let f = split(tnspec);
    if f.len() != FIELDS || f.first().map(|id| id.len()) != Some(4) {
        return None;
    }
    let mut f: Vec<Vec<u8>> = f.iter().map(|x| x.to_vec()).collect();
    let [board, fab, sku, rev, _fuse, chiprev, ..] = f.as_mut_slice() else {
        return None;
    };
    let first = |v: &Vec<u8>| v.first().copied().unwrap_or(0);
    match board.as_slice() {
        b"2180" => {
            // TX1: one build for every revision.
            fab.clear();
            sku.clear();
            rev.clear();
            chiprev.clear();
        }
        b"3448" => {
            // Nano: FABs grouped by their first digit.
            if fab.len() == 3 {
                *fab = match first(fab) {
                    b'0' => b"000".to_vec(),
                    b'1' => b"100".to_vec(),
                    b'2' => b"200".to_vec(),
                    _ => b"300".to_vec(),
                };
            }
            rev.clear();
            chiprev.clear();
        }
        b"3310" => {
            // TX2: every FAB from B01 on is B01.
            if fab.len() == 3 && fab.as_slice() != b"B00" && first(fab) >= b'B' {
                *fab = b"B01".to_vec();
            }
            sku.clear();
            rev.clear();
            chiprev.clear();
        }
        b"3489" => {
            // TX2i / TX2-4GB.
            if fab.len() == 3 {
                *fab = if (b'0'..=b'2').contains(&first(fab)) {
                    b"200".to_vec()
                } else {
                    b"300".to_vec()
                };
            }
            sku.clear();
            rev.clear();
            chiprev.clear();
        }
        b"3636" => {
            // TX2 NX: only the SKU matters.
            fab.clear();
            rev.clear();
            chiprev.clear();
        }
        b"2888" => {
            // AGX Xavier: FAB 400 boards grouped by SKU and revision.
            if fab.as_slice() == b"400" {
                if sku.as_slice() == b"0004" {
                    rev.clear();
                } else {
                    *sku = b"0001".to_vec();
                    if !rev.is_empty() {
                        *rev = if (b'A'..=b'D').contains(&first(rev)) {
                            b"D.0".to_vec()
                        } else {
                            b"E.0".to_vec()
                        };
                    }
                }
            } else if fab.as_slice() == b"600" && sku.as_slice() == b"0008" {
                rev.clear();
            }
        }
        b"3668" => {
            // Xavier NX: 301 and everything else (as 100).
            if fab.len() == 3 && fab.as_slice() != b"301" {
                *fab = b"100".to_vec();
            }
            sku.clear();
            rev.clear();
            chiprev.clear();
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(tnspec.len());
    for field in f.iter().take(BOOTDEV) {
        out.extend_from_slice(field);
        out.push(b'-');
    }
    Some(out)
}

/// Why an entry was selected, best first: the order in which duplicates for
/// one partition are preferred (§2.8 REC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// A non-empty spec that matches the board's TNSPEC.
    Tnspec,
    /// A non-empty spec that matches only the compatible spec.
    Compat,
    /// An empty ("common") spec.
    Common,
}

/// An entry chosen for this board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selected {
    /// Index into the payload's entries.
    pub index: u32,
    /// How it matched.
    pub how: MatchKind,
}

/// A selected entry that lost to another entry for the same partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// The entry not used.
    pub index: u32,
    /// The entry used instead.
    pub kept: u32,
}

/// The outcome of matching a payload against a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The board's TNSPEC.
    pub tnspec: String,
    /// Its compatible spec, when it has one.
    pub compat: Option<String>,
    /// Exactly one entry per partition name, in payload order.
    pub selected: Vec<Selected>,
    /// Duplicates that were resolved away (REF writes them all, or crashes).
    pub dropped: Vec<Dropped>,
    /// Partitions that have board-specific entries, none of them for this
    /// board (§2.7), in first-seen order.
    pub missing: Vec<String>,
}

/// Chooses the entries for a board (§2.6), resolves duplicates (§2.8 REC)
/// and lists the partitions with no entry for it (§2.7).
///
/// An entry is a candidate when its op_mode is not 1 (pre-production) and
/// its spec matches the TNSPEC or the compatible spec. REF keeps every
/// candidate and writes them in turn, crashing when `mb1`, `mb2` or `BCT` is
/// among the duplicates; we keep one per partition: the best [`MatchKind`],
/// and among equals the last in the payload (what REF leaves on disk).
pub fn select(entries: &[PayloadEntry], tnspec: &str) -> Selection {
    let compat = compat_spec(tnspec.as_bytes());
    let matches = |spec: &[u8]| {
        specs_match(spec, tnspec.as_bytes())
            || compat.as_deref().is_some_and(|c| specs_match(spec, c))
    };
    let mut best: Vec<(usize, MatchKind)> = Vec::new(); // (entry position, kind)
    let mut dropped = Vec::new();
    for (pos, e) in entries.iter().enumerate() {
        if e.op_mode == OP_MODE_PREPRODUCTION {
            continue;
        }
        let how = if e.spec.is_empty() {
            MatchKind::Common
        } else if specs_match(&e.spec, tnspec.as_bytes()) {
            MatchKind::Tnspec
        } else if compat.as_deref().is_some_and(|c| specs_match(&e.spec, c)) {
            MatchKind::Compat
        } else {
            continue;
        };
        let same = best
            .iter_mut()
            .find(|(p, _)| entries.get(*p).map(|x| &x.name) == Some(&e.name));
        match same {
            None => best.push((pos, how)),
            Some(slot) => {
                if how <= slot.1 {
                    dropped.push((slot.0, pos));
                    *slot = (pos, how);
                } else {
                    dropped.push((pos, slot.0));
                }
            }
        }
    }
    // A later winner may itself have replaced an earlier one: point every
    // dropped entry at the final winner for its name.
    let index = |p: usize| entries.get(p).map_or(0, |e| e.index);
    let winner_of = |p: usize| {
        let name = entries.get(p).map(|e| &e.name);
        best.iter()
            .find(|(w, _)| entries.get(*w).map(|e| &e.name) == name)
            .map_or(p, |(w, _)| *w)
    };
    let mut dropped: Vec<Dropped> = dropped
        .into_iter()
        .map(|(lost, _)| Dropped {
            index: index(lost),
            kept: index(winner_of(lost)),
        })
        .collect();
    dropped.sort_by_key(|d| d.index);
    best.sort_by_key(|(p, _)| *p);

    // §2.7: partitions with board-specific entries must have one for us.
    let mut specific: Vec<&[u8]> = Vec::new();
    let mut found: Vec<&[u8]> = Vec::new();
    for e in entries {
        if e.op_mode == OP_MODE_PREPRODUCTION || e.spec.is_empty() {
            continue;
        }
        if !specific.contains(&e.name.as_slice()) {
            specific.push(&e.name);
        }
        if matches(&e.spec) && !found.contains(&e.name.as_slice()) {
            found.push(&e.name);
        }
    }
    let missing = specific
        .into_iter()
        .filter(|n| !found.contains(n))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();

    Selection {
        tnspec: tnspec.to_owned(),
        compat: compat.map(|c| String::from_utf8_lossy(&c).into_owned()),
        selected: best
            .into_iter()
            .map(|(p, how)| Selected {
                index: index(p),
                how,
            })
            .collect(),
        dropped,
        missing,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::payload::{Builder, Payload};
    use super::*;

    const SYS: &str = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1";

    fn fields(s: &str) -> Vec<String> {
        split(s.as_bytes())
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn split_vectors() {
        assert_eq!(
            fields(SYS),
            [
                "3310",
                "B01",
                "1000",
                "L.0",
                "1",
                "0",
                "jetson-tx2-devkit",
                "mmcblk0p1"
            ]
        );
        assert_eq!(
            fields("3636--0001--1--jetson-xavier-nx-devkit-tx2-nx-"),
            [
                "3636",
                "",
                "0001",
                "",
                "1",
                "",
                "jetson-xavier-nx-devkit-tx2-nx",
                ""
            ]
        );
        assert_eq!(fields("a-b-c-d-e-f-g").len(), 7);
        let ten = fields("a-b-c-d-e-f-g-h-i-j");
        assert_eq!(ten.len(), 8);
        assert_eq!(ten[6], "g-h-i");
        assert_eq!(ten[7], "j");
        let dashes = fields("--------");
        assert_eq!(dashes.len(), 8);
        assert_eq!(dashes[6], "-");
        assert!(dashes
            .iter()
            .enumerate()
            .all(|(i, f)| i == 6 || f.is_empty()));
        assert_eq!(fields("3310-B01"), ["3310", "B01"]);
        assert!(fields("").is_empty());
    }

    #[test]
    fn match_truth_table() {
        let internal = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-internal";
        for (entry, system, want) in [
            ("", SYS, true),
            ("3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1", SYS, true),
            ("3310-B00---1-0-jetson-tx2-devkit-mmcblk0p1", SYS, false),
            ("3310-B01---1-0-jetson-tx2-devkit-", SYS, true),
            ("3310-B01---1-0-jetson-tx2-devkit-mmcblk0p2", SYS, false),
            ("3310-B01---1-0-jetson-tx2-devkit", SYS, false),
            ("3310-B01---0-0-jetson-tx2-devkit-mmcblk0p1", SYS, false),
            ("3310-b01---1-0-jetson-tx2-devkit-mmcblk0p1", SYS, false),
            ("3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1", internal, true),
            (
                "3310-B01---1-0-jetson-tx2-devkit-mmcblk1p1",
                internal,
                false,
            ),
            ("3310-B01---1-0-jetson-tx2-devkit-internal", SYS, false),
            ("3310-B01---1-0-jetson-tx2-devkit-mmcblk0p", internal, false),
            (
                "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1",
                "3310-B01--L.0-1-0-jetson-tx2-devkit-mmcblk0p1",
                true,
            ),
        ] {
            assert_eq!(
                specs_match(entry.as_bytes(), system.as_bytes()),
                want,
                "{entry} vs {system}"
            );
        }
    }

    #[test]
    fn compat_vectors() {
        for (tnspec, want) in [
            (
                "2180-400-0000-A.0-1-0-jetson-tx1-devkit-mmcblk0p1",
                Some("2180----1--jetson-tx1-devkit-"),
            ),
            (
                "3448-200-0000-B.0-1-0-jetson-nano-devkit-mmcblk0p1",
                Some("3448-200-0000--1--jetson-nano-devkit-"),
            ),
            (
                "3448-401-0000-B.0-1-0-jetson-nano-qspi-sd-mmcblk0p1",
                Some("3448-300-0000--1--jetson-nano-qspi-sd-"),
            ),
            (
                "3448-1-0000-B.0-1-0-jetson-nano-devkit-mmcblk0p1",
                Some("3448-1-0000--1--jetson-nano-devkit-"),
            ),
            (
                "3310-B00-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1",
                Some("3310-B00---1--jetson-tx2-devkit-"),
            ),
            (
                "3310-D01-1000-B.0-1-0-astro-tx2-mmcblk0p1",
                Some("3310-B01---1--astro-tx2-"),
            ),
            (
                "3310-A01-1000-B.0-1-0-jetson-tx2-devkit-mmcblk0p1",
                Some("3310-A01---1--jetson-tx2-devkit-"),
            ),
            (
                "3489-100-0888-A.0-1-0-jetson-tx2-devkit-4gb-mmcblk0p1",
                Some("3489-200---1--jetson-tx2-devkit-4gb-"),
            ),
            (
                "3489-A00-0000-B.0-1-0-jetson-tx2-devkit-tx2i-mmcblk0p1",
                Some("3489-300---1--jetson-tx2-devkit-tx2i-"),
            ),
            (
                "3636-300-0001-H.0-1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1",
                Some("3636--0001--1--jetson-xavier-nx-devkit-tx2-nx-"),
            ),
            (
                "2888-400-0001-C.1-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                Some("2888-400-0001-D.0-1-2-jetson-agx-xavier-devkit-"),
            ),
            (
                "2888-400-0001-J.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                Some("2888-400-0001-E.0-1-2-jetson-agx-xavier-devkit-"),
            ),
            (
                "2888-400-0002--1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                Some("2888-400-0001--1-2-jetson-agx-xavier-devkit-"),
            ),
            (
                "2888-400-0004-E.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                Some("2888-400-0004--1-2-jetson-agx-xavier-devkit-"),
            ),
            (
                "2888-600-0008-B.0-1-2-jetson-agx-xavier-industrial-mmcblk0p1",
                Some("2888-600-0008--1-2-jetson-agx-xavier-industrial-"),
            ),
            (
                "2888-600-0001-B.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                Some("2888-600-0001-B.0-1-2-jetson-agx-xavier-devkit-"),
            ),
            (
                "3668-301-0001-J.0-1-2-jetson-xavier-nx-devkit-emmc-mmcblk0p1",
                Some("3668-301---1--jetson-xavier-nx-devkit-emmc-"),
            ),
            (
                "3668-300-0000-B.0-1-2-jetson-xavier-nx-devkit-mmcblk0p1",
                Some("3668-100---1--jetson-xavier-nx-devkit-"),
            ),
            (
                "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-mmcblk0p1",
                Some("3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-"),
            ),
            (
                "12345-500-0000-J.0-1-1-jetson-agx-orin-devkit-mmcblk0p1",
                None,
            ),
            ("3310-B01-1000-L.0-1-0-jetson", None),
        ] {
            let got = compat_spec(tnspec.as_bytes()).map(|c| String::from_utf8(c).unwrap());
            assert_eq!(got.as_deref(), want, "{tnspec}");
        }
    }

    fn payload(b: Builder) -> Payload {
        Payload::parse_bytes(&b.build()).unwrap()
    }

    fn names(p: &Payload, s: &Selection) -> Vec<(String, u32)> {
        s.selected
            .iter()
            .map(|x| {
                let e = &p.entries[x.index as usize];
                (e.name_lossy().into_owned(), e.index)
            })
            .collect()
    }

    #[test]
    fn the_good_payload_of_the_parser_matrix() {
        // docs/spec/bup-format.md §6.2: mb2, mb1 (op2 copy), BCT (B01 copy); kernel-dtb
        // has only a B00 entry, so it is missing.
        let p = payload(super::super::payload::tests_support::good());
        let s = select(&p.entries, SYS);
        assert_eq!(
            s.compat.as_deref(),
            Some("3310-B01---1--jetson-tx2-devkit-")
        );
        assert_eq!(
            names(&p, &s),
            [("mb2".into(), 0), ("mb1".into(), 2), ("BCT".into(), 4)]
        );
        assert_eq!(s.missing, ["kernel-dtb"]);
        assert!(s.dropped.is_empty());
    }

    #[test]
    fn zero_entries_select_nothing_and_miss_nothing() {
        let s = select(&[], SYS);
        assert!(s.selected.is_empty() && s.missing.is_empty());
    }

    #[test]
    fn duplicates_keep_the_best_match_then_the_last() {
        // Deviation from REF (docs/spec/bup-format.md §2.8 REC): REF writes every
        // duplicate in turn and crashes on duplicate BCT/mb1/mb2 tasks; we
        // keep one per partition. The TX2-NX case of tegra-demo-distro#304:
        // the compatible spec empties FAB, so both SKU entries would match.
        let tnspec = "3636-300-0001-H.0-1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1";
        let spec = |fab: &str, sku: &str| {
            format!("3636-{fab}-{sku}--1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1")
        };
        let p = payload(
            Builder::new()
                .entry("BCT", b"compat 300", 0, &spec("301", "0001"))
                .entry("BCT", b"exact", 0, &spec("300", "0001"))
                .entry("BCT", b"compat 302", 0, &spec("302", "0001"))
                .entry("BCT", b"common", 0, "")
                .entry("BCT", b"other sku", 0, &spec("300", "0003"))
                .entry("mb2", b"first", 0, "")
                .entry("mb2", b"second", 2, "")
                .entry("VER", b"compat a", 0, &spec("301", "0001"))
                .entry("VER", b"compat b", 0, &spec("302", "0001")),
        );
        let s = select(&p.entries, tnspec);
        assert_eq!(
            names(&p, &s),
            [("BCT".into(), 1), ("mb2".into(), 6), ("VER".into(), 8)]
        );
        assert_eq!(s.selected[0].how, MatchKind::Tnspec);
        assert_eq!(s.selected[2].how, MatchKind::Compat);
        assert_eq!(
            s.dropped,
            [(0, 1), (2, 1), (3, 1), (5, 6), (7, 8)].map(|(index, kept)| Dropped { index, kept })
        );
        assert!(s.missing.is_empty());
    }

    #[test]
    fn missing_entries_name_each_partition_once_in_first_seen_order() {
        // meta-tegra#1067: a payload built for other FABs.
        let tnspec = "3636-301-0001-D.0-1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1";
        let other = "3636-300-0003--1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1";
        let p = payload(
            Builder::new()
                .entry("bpmp-fw-dtb", b"x", 0, other)
                .entry("VER", b"x", 0, other)
                .entry("bpmp-fw-dtb", b"y", 0, other)
                .entry("mb1", b"dev", 1, other)
                .entry("kernel", b"k", 0, ""),
        );
        let s = select(&p.entries, tnspec);
        assert_eq!(s.missing, ["bpmp-fw-dtb", "VER"]);
        assert_eq!(names(&p, &s), [("kernel".into(), 4)]);
    }

    #[test]
    fn split_and_match_never_panic() {
        use proptest::prelude::*;
        proptest!(|(a in proptest::collection::vec(prop_oneof![Just(b'-'), any::<u8>()], 0..80),
                    b in proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'a')], 0..80))| {
            prop_assert!(split(&a).len() <= FIELDS);
            let _ = specs_match(&a, &b);
            if let Some(c) = compat_spec(&a) {
                prop_assert_eq!(split(&c).len(), FIELDS);
            }
        });
    }
}
