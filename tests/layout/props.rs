//! Property tests of the layout engine: random valid layouts never overlap,
//! stay within [first usable, N − 34] and keep their ids; random damaged
//! layouts are refused with an error, never a panic.

use proptest::prelude::*;
use sysinstall::layout::{parse, LoadOptions};

#[derive(Debug, Clone)]
struct Spec {
    sectors: u64,
    /// Bytes short of a whole number of sectors (exercises rounding up).
    short: u64,
    align: u64,
    /// Gap before the partition, as an explicit start_location, in bytes.
    gap: Option<u64>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1u64..5000,
        0u64..512,
        prop_oneof![Just(0u64), Just(4096), Just(16384), Just(65536)],
        proptest::option::of(0u64..200_000),
    )
        .prop_map(|(sectors, short, align, gap)| Spec {
            sectors,
            short,
            align,
            gap,
        })
}

/// Builds the XML and returns it with the disk size and the ids given.
fn build(pg: u64, specs: &[Spec], ids: &[Option<u32>], fill: bool) -> (String, u64) {
    let mut s = String::from(
        "<partition_layout>\n<device type=\"sdmmc_user\" sector_size=\"512\">\n\
         <partition name=\"mbr\" type=\"protective_master_boot_record\"><size>512</size></partition>\n",
    );
    s.push_str(&format!(
        "<partition name=\"pgpt\" type=\"primary_gpt\"><size>{pg}</size></partition>\n"
    ));
    // Track the position the way the engine must, only to compute explicit
    // start locations that are never behind it.
    let mut cur = 1 + pg.div_ceil(512);
    let mut need = cur;
    for (i, sp) in specs.iter().enumerate() {
        let id = ids[i].map(|n| format!(" id=\"{n}\"")).unwrap_or_default();
        let mut body = format!("<size>{}</size>", sp.sectors * 512 - sp.short.min(511));
        if sp.align > 0 {
            body.push_str(&format!("<align_boundary>{}</align_boundary>", sp.align));
        }
        let start = match sp.gap {
            Some(g) => {
                let bytes = cur * 512 + g;
                body.push_str(&format!("<start_location>{bytes:#x}</start_location>"));
                bytes.div_ceil(512)
            }
            None if sp.align > 0 => (cur * 512).div_ceil(sp.align) * sp.align / 512,
            None => cur,
        };
        cur = start + sp.sectors;
        need = cur;
        s.push_str(&format!(
            "<partition name=\"p{i}\" type=\"data\"{id}>{body}</partition>\n"
        ));
    }
    if fill {
        s.push_str("<partition name=\"fill\" type=\"data\"><allocation_attribute>0x808</allocation_attribute></partition>\n");
        need += 100;
    }
    s.push_str(
        "<partition name=\"sgpt\" type=\"secondary_gpt\"/>\n</device>\n</partition_layout>\n",
    );
    (s, need + 34 + 1000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_layouts_are_placed_within_bounds_without_overlap(
        pg in prop_oneof![Just(16896u64), Just(19968), Just(2097152)],
        specs in proptest::collection::vec(spec(), 1..24),
        explicit in any::<bool>(),
        shuffle in any::<u64>(),
        fill in any::<bool>(),
    ) {
        // Either every partition has a distinct explicit id, or none has one.
        let n = specs.len();
        let ids: Vec<Option<u32>> = if explicit {
            let mut v: Vec<u32> = (1..=128).collect();
            let mut x = shuffle | 1;
            for i in (1..v.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                v.swap(i, (x % (i as u64 + 1)) as usize);
            }
            v.into_iter().take(n).map(Some).collect()
        } else {
            vec![None; n]
        };
        let (xml, disk) = build(pg, &specs, &ids, fill && !explicit);
        let l = parse(&xml, "prop.xml", &LoadOptions { set: vec![], disk_sectors: Some(disk) })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t = &l.user;
        prop_assert_eq!(t.first_usable_lba, 1 + pg.div_ceil(512));
        prop_assert_eq!(t.last_usable_lba, disk - 34);
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for p in &t.partitions {
            prop_assert!(t.first_usable_lba <= p.first_lba);
            prop_assert!(p.first_lba <= p.last_lba);
            prop_assert!(p.last_lba <= disk - 34);
            spans.push((p.first_lba, p.last_lba));
            if let Some(i) = p.name.strip_prefix('p').and_then(|i| i.parse::<usize>().ok()) {
                let want = ids[i].unwrap_or(i as u32 + 1);
                prop_assert_eq!(p.number, want, "id of {}", p.name);
                prop_assert_eq!(p.sectors(), specs[i].sectors);
            } else {
                prop_assert_eq!(p.last_lba, disk - 34, "fill ends at N-34");
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            prop_assert!(w[0].1 < w[1].0, "overlap {:?}", w);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse(&text, "fuzz.xml", &LoadOptions::default());
        let _ = parse(&format!("<{text}"), "fuzz.xml", &LoadOptions::default());
    }

    #[test]
    fn mutated_layouts_are_refused_or_placed_never_panic(
        cut in 0usize..2000,
        byte in any::<u8>(),
        disk in prop_oneof![Just(0u64), Just(1), Just(67), Just(100_000), Just(u64::MAX)],
    ) {
        let (xml, _) = build(16896, &[Spec { sectors: 10, short: 3, align: 4096, gap: Some(7) }], &[Some(5)], true);
        let mut bytes = xml.into_bytes();
        let at = cut % bytes.len();
        bytes[at] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            if let Ok(l) = parse(&text, "m.xml", &LoadOptions { set: vec![], disk_sectors: Some(disk) }) {
                for p in &l.user.partitions {
                    prop_assert!(p.last_lba <= l.user.last_usable_lba);
                    prop_assert!(p.first_lba >= l.user.first_usable_lba);
                }
            }
        }
    }
}
