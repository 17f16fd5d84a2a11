//! tegra-sysinstall's `partition_table` CSV (docs/spec/flash-layout.md §3.2–3.4, §5.5).
//!
//! One row per partition, `partnum,name,size,type,guid,file,startpos`: size in
//! 512-byte sectors or `REMAIN`, type empty (basic data), an sgdisk code or a
//! GUID, guid empty (random) or a GUID, file unused, startpos a sector (empty
//! or 0: the start of the largest free block, as sgdisk does). Lines starting
//! with `#` are comments. tegra-sysinstall < 1.5 used six fields without the
//! number (`name,size,type,guid,file,startpos`, numbered in order); both are
//! read.
//!
//! Placement replays what tegra-sysinstall's sgdisk call does with `-a 1`,
//! except that a `REMAIN` row keeps its start position (sgdisk's
//! `--largest-new` ignored it, which put the fill partition one sector off
//! NVIDIA's when it has an `align_boundary`, §3.6.1), and rows may come in
//! any order: fixed rows first in file order, `REMAIN` last.
//!
//! The CSV we write carries the first usable LBA and the disk size in a
//! comment line (`# sysinstall: first-usable-lba=N disk-sectors=N`), which the
//! old tool ignores and this reader honours, so XML → CSV → table is exact.

#![deny(clippy::indexing_slicing)]

use super::{
    render::type_code, LayoutError, Partition, PartitionTable, GPT_ENTRIES, MAX_NAME_UTF16,
    NIL_GUID, SECTOR_SIZE,
};
use crate::guid::{Guid, BASIC_DATA, EFI_SYSTEM, LINUX_FILESYSTEM};

/// First usable LBA of a table written by sgdisk (128 entries at LBA 2–33).
pub const SGDISK_FIRST_USABLE: u64 = 34;
/// Most rows a CSV may have (a GPT has 128 entries).
pub const MAX_ROWS: usize = GPT_ENTRIES as usize;

const META_PREFIX: &str = "# sysinstall:";

/// Size of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSize {
    /// That many sectors.
    Sectors(u64),
    /// The rest of the free space.
    Remain,
}

/// One CSV row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Line in the file.
    pub line: u32,
    /// GPT number.
    pub number: u32,
    /// Name.
    pub name: String,
    /// Size.
    pub size: RowSize,
    /// Type GUID.
    pub type_guid: Guid,
    /// Unique GUID, if fixed.
    pub unique_guid: Option<Guid>,
    /// Start sector, if given (non-zero).
    pub start: Option<u64>,
}

/// A parsed CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csv {
    /// Rows in file order.
    pub rows: Vec<Row>,
    /// `first-usable-lba` from our metadata comment.
    pub first_usable_lba: Option<u64>,
    /// `disk-sectors` from our metadata comment.
    pub disk_sectors: Option<u64>,
    /// Remarks for the operator (a name cut to 36 UTF-16 units).
    pub notes: Vec<String>,
}

fn err(file: &str, line: u32, partition: Option<&str>, rule: impl Into<String>) -> LayoutError {
    LayoutError {
        file: file.to_owned(),
        line: Some(line),
        partition: partition.map(str::to_owned),
        rule: rule.into(),
    }
}

/// Maps an sgdisk type code or a GUID to a type GUID.
fn parse_type(text: &str) -> Option<Guid> {
    if text.is_empty() {
        return Some(BASIC_DATA);
    }
    match text.to_ascii_uppercase().as_str() {
        "0700" => Some(BASIC_DATA),
        "EF00" => Some(EFI_SYSTEM),
        "8300" => Some(LINUX_FILESYSTEM),
        _ => Guid::parse(text).ok(),
    }
}

/// Parses CSV text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Csv, LayoutError> {
    let mut csv = Csv {
        rows: Vec::new(),
        first_usable_lba: None,
        disk_sectors: None,
        notes: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let t = raw.trim();
        if let Some(meta) = t.strip_prefix(META_PREFIX) {
            for kv in meta.split_whitespace() {
                let value = |v: &str| {
                    v.parse::<u64>()
                        .map_err(|_| err(file, line, None, format!("bad metadata value '{kv}'")))
                };
                match kv.split_once('=') {
                    Some(("first-usable-lba", v)) => {
                        // LBA 0-33 hold the MBR, the header and 128 entries.
                        let lba = value(v)?;
                        if lba < SGDISK_FIRST_USABLE {
                            return Err(err(
                                file,
                                line,
                                None,
                                format!("first-usable-lba {lba} would put partitions over the primary GPT (LBA 0..{SGDISK_FIRST_USABLE})"),
                            ));
                        }
                        csv.first_usable_lba = Some(lba);
                    }
                    Some(("disk-sectors", v)) => csv.disk_sectors = Some(value(v)?),
                    _ => {}
                }
            }
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if csv.rows.len() >= MAX_ROWS {
            return Err(err(file, line, None, format!("more than {MAX_ROWS} rows")));
        }
        let fields: Vec<&str> = t.split(',').map(str::trim).collect();
        let (number, rest) = match fields.len() {
            7 => {
                let n = fields.first().copied().unwrap_or("");
                let number = n.parse::<u32>().map_err(|_| {
                    err(file, line, None, format!("partition number '{n}' is not a number"))
                })?;
                (number, fields.get(1..).unwrap_or(&[]))
            }
            6 => (
                u32::try_from(csv.rows.len() + 1).unwrap_or(u32::MAX),
                fields.as_slice(),
            ),
            n => {
                return Err(err(
                    file,
                    line,
                    None,
                    format!("{n} fields; expected 7 (partnum,name,size,type,guid,file,startpos) or the old 6"),
                ))
            }
        };
        let [name, size, type_text, guid, _file, start] = rest else {
            return Err(err(file, line, None, "malformed row"));
        };
        let mut name = (*name).to_owned();
        if name.is_empty() {
            return Err(err(file, line, None, "row has no partition name"));
        }
        // A GPT name ends at its first NUL: the partition would lose the rest.
        if name.contains('\0') {
            return Err(err(
                file,
                line,
                Some(&name),
                "name contains a NUL character",
            ));
        }
        // sgdisk (tegra-sysinstall's writer) cuts a longer name to what an
        // entry holds; the board knows the partition by the cut name.
        let units = name.encode_utf16().count();
        if units > MAX_NAME_UTF16 {
            let cut = super::geometry::cut_utf16(&name, MAX_NAME_UTF16);
            csv.notes.push(format!(
                "line {line}: partition '{name}': the name is {units} UTF-16 units long; cut to '{cut}', the {MAX_NAME_UTF16} a GPT entry holds, as sgdisk does"
            ));
            name = cut;
        }
        let e = |rule: String| err(file, line, Some(&name), rule);
        if !(1..=GPT_ENTRIES).contains(&number) {
            return Err(e(format!(
                "partition number {number} is out of range [1, {GPT_ENTRIES}]"
            )));
        }
        let size = if size.eq_ignore_ascii_case("REMAIN") {
            RowSize::Remain
        } else {
            match size.parse::<u64>() {
                Ok(0) => return Err(e("has a size of zero".into())),
                Ok(s) => RowSize::Sectors(s),
                Err(_) => return Err(e(format!("size '{size}' is neither sectors nor REMAIN"))),
            }
        };
        let type_guid = parse_type(type_text).ok_or_else(|| {
            e(format!(
                "type '{type_text}' is neither a known sgdisk code nor a GUID"
            ))
        })?;
        let unique_guid = match *guid {
            "" | "R" | "r" => None,
            g => Some(Guid::parse(g).map_err(|_| e(format!("guid '{g}' is not a GUID")))?),
        };
        // The nil GUID marks an unused GPT entry: the partition would vanish.
        if type_guid.is_nil() || unique_guid.is_some_and(|g| g.is_nil()) {
            return Err(e(NIL_GUID.into()));
        }
        let start = match *start {
            "" => None,
            s => match s.parse::<u64>() {
                Ok(0) => None,
                Ok(v) => Some(v),
                Err(_) => return Err(e(format!("start position '{s}' is not a sector number"))),
            },
        };
        csv.rows.push(Row {
            line,
            number,
            name,
            size,
            type_guid,
            unique_guid,
            start,
        });
    }
    if csv.rows.is_empty() {
        return Err(LayoutError {
            file: file.to_owned(),
            line: None,
            partition: None,
            rule: "no partitions".into(),
        });
    }
    Ok(csv)
}

/// Free blocks `(first, last)` of `[lo, hi]` not covered by `parts`.
fn free_blocks(parts: &[Partition], lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut used: Vec<(u64, u64)> = parts.iter().map(|p| (p.first_lba, p.last_lba)).collect();
    used.sort_unstable();
    let mut out = Vec::new();
    let mut cur = lo;
    for (a, b) in used {
        if a > cur {
            out.push((cur, a - 1));
        }
        cur = cur.max(b.saturating_add(1));
    }
    if cur <= hi {
        out.push((cur, hi));
    }
    out
}

/// Places the rows on a disk of `disk_sectors` sectors.
pub fn place(
    csv: &Csv,
    disk_sectors: u64,
    file: &str,
) -> Result<(PartitionTable, Vec<String>), LayoutError> {
    let first_usable = csv.first_usable_lba.unwrap_or(SGDISK_FIRST_USABLE);
    if disk_sectors > super::MAX_DISK_SECTORS {
        return Err(LayoutError {
            file: file.to_owned(),
            line: None,
            partition: None,
            rule: super::geometry::too_big(disk_sectors, SECTOR_SIZE),
        });
    }
    let last_usable = disk_sectors
        .checked_sub(super::geometry::TAIL_SECTORS)
        .filter(|l| *l >= first_usable)
        .ok_or_else(|| LayoutError {
            file: file.to_owned(),
            line: None,
            partition: None,
            rule: format!("a disk of {disk_sectors} sectors is too small for a GPT"),
        })?;
    let mut notes = Vec::new();
    let mut parts: Vec<Partition> = Vec::new();
    let fixed = csv.rows.iter().filter(|r| r.size != RowSize::Remain);
    let remain: Vec<&Row> = csv
        .rows
        .iter()
        .filter(|r| r.size == RowSize::Remain)
        .collect();
    if let Some(second) = remain.get(1) {
        return Err(err(
            file,
            second.line,
            Some(&second.name),
            "a second REMAIN row",
        ));
    }
    for r in fixed.chain(remain.iter().copied()) {
        let e = |rule: String| err(file, r.line, Some(&r.name), rule);
        if let Some(other) = parts.iter().find(|p| p.number == r.number) {
            return Err(e(format!(
                "partition number {} is already used by '{}'",
                r.number, other.name
            )));
        }
        if let Some(other) = parts.iter().find(|p| p.name == r.name) {
            return Err(e(format!(
                "name is already used by partition {}",
                other.number
            )));
        }
        let blocks = free_blocks(&parts, first_usable, last_usable);
        let block_of = |s: u64| blocks.iter().copied().find(|(a, b)| (*a..=*b).contains(&s));
        let largest = blocks
            .iter()
            .copied()
            .max_by_key(|(a, b)| (b - a, std::cmp::Reverse(*a)));
        let start = match r.start {
            Some(s) => s,
            None => largest
                .map(|(a, _)| a)
                .ok_or_else(|| e("no free space left".into()))?,
        };
        let Some((_, block_end)) = block_of(start) else {
            return Err(e(format!(
                "start sector {start} is not free (outside {first_usable}..={last_usable} or inside another partition)"
            )));
        };
        let last = match r.size {
            RowSize::Remain => block_end,
            RowSize::Sectors(n) => {
                let last = start.saturating_add(n - 1);
                if last > block_end {
                    return Err(e(format!(
                        "sectors {start}..={last} overlap another partition or run past the last usable sector {last_usable}"
                    )));
                }
                last
            }
        };
        let unique_guid = match r.unique_guid {
            Some(g) if parts.iter().any(|p| p.unique_guid == Some(g)) => {
                notes.push(format!(
                    "partition '{}': unique GUID {g} is used twice in the CSV; a new one will be generated",
                    r.name
                ));
                None
            }
            g => g,
        };
        parts.push(Partition {
            number: r.number,
            name: r.name.clone(),
            first_lba: start,
            last_lba: last,
            type_guid: r.type_guid,
            unique_guid,
            // A REMAIN row fills the free block it starts in; that is "the
            // rest of the disk" only when no partition comes after it.
            fills_disk: r.size == RowSize::Remain && last == last_usable,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok((
        PartitionTable {
            sector_size: SECTOR_SIZE,
            disk_sectors,
            first_usable_lba: first_usable,
            last_usable_lba: last_usable,
            partitions: parts,
        },
        notes,
    ))
}

/// True when a row can carry this name: the format has no quoting, and
/// readers split lines at `,` and trim the fields.
pub fn name_fits(name: &str) -> bool {
    !name.contains([',', '\n', '\r']) && name.trim() == name
}

/// Writes a table as CSV, rows in physical order (so `REMAIN` is last, as
/// tegra-sysinstall's single sgdisk call needs), with our metadata comment.
/// A name a row cannot carry ([`name_fits`]) is an error naming it, and so
/// is a table of 4096-byte sectors (the format counts 512-byte sectors).
pub fn write(table: &PartitionTable, source: &str) -> Result<String, LayoutError> {
    if table.sector_size != SECTOR_SIZE {
        return Err(LayoutError {
            file: source.to_owned(),
            line: None,
            partition: None,
            rule: format!(
                "a partition_table CSV counts {SECTOR_SIZE}-byte sectors; this table has {}-byte sectors",
                table.sector_size
            ),
        });
    }
    if let Some(p) = table.partitions.iter().find(|p| !name_fits(&p.name)) {
        return Err(LayoutError {
            file: source.to_owned(),
            line: None,
            partition: Some(p.name.clone()),
            rule: "the name cannot be written to a partition_table CSV (it has a comma, a line break or surrounding blanks)".into(),
        });
    }
    let mut out = format!(
        "# partition_table for tegra-sysinstall, generated by sysinstall {} from {}\n{META_PREFIX} first-usable-lba={} disk-sectors={}\n",
        env!("CARGO_PKG_VERSION"),
        source.replace('\n', " "),
        table.first_usable_lba,
        table.disk_sectors
    );
    let mut rows: Vec<&Partition> = table.partitions.iter().collect();
    rows.sort_by_key(|p| p.first_lba);
    for p in rows {
        let size = if p.fills_disk {
            "REMAIN".to_owned()
        } else {
            p.sectors().to_string()
        };
        let ty = if p.type_guid == BASIC_DATA {
            String::new()
        } else {
            type_code(&p.type_guid)
        };
        let guid = p.unique_guid.map(|g| g.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},,{}\n",
            p.number, p.name, size, ty, guid, p.first_lba
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn remain_may_come_first_and_keeps_its_start() {
        let text =
            "# comment\n5,EXTRA,REMAIN,,,,4374832\n1,APP,100,,,,34\n  \n2,B,4374698,,,,134\n";
        let csv = parse(text, "t.csv").unwrap();
        let (t, notes) = place(&csv, 61079552, "t.csv").unwrap();
        assert!(notes.is_empty());
        let extra = t.by_name("EXTRA").unwrap();
        assert_eq!((extra.first_lba, extra.last_lba), (4374832, 61079552 - 34));
        assert!(extra.fills_disk);
        assert_eq!(
            t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 5]
        );
    }

    #[test]
    fn empty_start_takes_the_largest_free_block_like_sgdisk() {
        // The warrior-era format: only the first row has a start.
        let text = "6,a,8,,,,40\n7,b,8,,,,\n1,c,REMAIN,,,,\n";
        let (t, _) = place(&parse(text, "w").unwrap(), 1000, "w").unwrap();
        assert_eq!(t.by_name("b").unwrap().first_lba, 48);
        assert_eq!(t.by_name("c").unwrap().first_lba, 56);
        assert_eq!(t.by_name("c").unwrap().last_lba, 966);
    }

    #[test]
    fn six_field_rows_are_numbered_in_order() {
        let text = "APP,100,,,,34\nAPP_b,100,,,,\n";
        let (t, _) = place(&parse(text, "old").unwrap(), 10000, "old").unwrap();
        assert_eq!(t.by_number(2).unwrap().name, "APP_b");
        assert_eq!(t.by_number(2).unwrap().first_lba, 134);
    }

    #[test]
    fn types_and_guids() {
        let text = "1,esp,8,EF00,11111111-2222-3333-4444-555555555555,,40\n2,x,8,0fc63daf-8483-4772-8e79-3d69d8477de4,R,,48\n";
        let (t, _) = place(&parse(text, "t").unwrap(), 1000, "t").unwrap();
        assert_eq!(t.partitions[0].type_guid, EFI_SYSTEM);
        assert!(t.partitions[0].unique_guid.is_some());
        assert_eq!(t.partitions[1].type_guid, LINUX_FILESYSTEM);
        assert_eq!(t.partitions[1].unique_guid, None);
    }

    #[test]
    fn duplicate_guid_is_regenerated_with_a_note() {
        let g = "78e5515a-d631-4e32-81b9-281c781d6741";
        let text = format!("1,APP,8,,{g},,40\n2,APP_b,8,,{g},,48\n");
        let (t, notes) = place(&parse(&text, "x").unwrap(), 1000, "x").unwrap();
        assert!(t.partitions[0].unique_guid.is_some());
        assert_eq!(t.partitions[1].unique_guid, None);
        assert!(notes[0].contains("APP_b"), "{notes:?}");
    }

    #[test]
    fn errors_name_the_line_and_partition() {
        let cases = [
            ("1,APP,abc,,,,34\n", "size 'abc'"),
            ("1,APP,0,,,,34\n", "size of zero"),
            ("1,APP,8,,,,34\n1,B,8,,,,50\n", "already used by 'APP'"),
            ("1,APP,8,,,,34\n2,APP,8,,,,50\n", "name is already used"),
            ("129,APP,8,,,,34\n", "out of range"),
            ("1,APP,8,zz,,,34\n", "type 'zz'"),
            ("1,APP,8,,nope,,34\n", "guid 'nope'"),
            ("1,APP,8,,,,30\n", "not free"),
            (
                "1,APP,8,,,,34\n2,B,8,,,,40\n",
                "start sector 40 is not free",
            ),
            ("1,APP,8,,,,40\n2,B,8,,,,34\n", "overlap"),
            ("1,A,REMAIN,,,,34\n2,B,REMAIN,,,,\n", "second REMAIN"),
            ("1,APP,8\n", "3 fields"),
            ("1,APP,2000,,,,34\n", "overlap"),
        ];
        for (text, want) in cases {
            let e = parse(text, "bad.csv").and_then(|c| place(&c, 1000, "bad.csv").map(|_| ()));
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert!(msg.starts_with("bad.csv:"), "{msg}");
        }
    }

    /// Fuzz regression (layout_csv): a name with NUL characters was placed;
    /// in the GPT it would have been cut at the first NUL.
    #[test]
    fn fuzz_name_with_nul_is_refused() {
        let e = parse("6,B_Y\0\0kernel-dtb,1536,,,,40\n", "n.csv").unwrap_err();
        assert!(
            e.to_string().contains("name contains a NUL character"),
            "{e}"
        );
    }

    /// Fuzz regression (layout_csv): `first-usable-lba=17` in our metadata
    /// comment let a partition start inside the primary GPT's entry array.
    #[test]
    fn fuzz_first_usable_lba_inside_the_primary_gpt_is_refused() {
        let text = "# sysinstall: first-usable-lba=17 disk-sectors=8388608\n6,A,8,,,,17\n";
        let e = parse(text, "m.csv").unwrap_err().to_string();
        assert!(
            e.contains("m.csv:1: first-usable-lba 17 would put partitions over the primary GPT"),
            "{e}"
        );
        assert!(parse(&text.replace("=17", "=34"), "m.csv").is_ok());
    }

    /// Fuzz regression (layout_csv): a REMAIN row starting before a fixed row
    /// ends where that row begins, yet was marked as filling the disk.
    #[test]
    fn fuzz_remain_before_another_partition_does_not_fill_the_disk() {
        let text = "1,A,REMAIN,,,,40\n2,B,8,,,,100\n";
        let (t, _) = place(&parse(text, "r.csv").unwrap(), 1000, "r.csv").unwrap();
        let a = t.by_name("A").unwrap();
        assert_eq!((a.first_lba, a.last_lba, a.fills_disk), (40, 99, false));
        assert!(write(&t, "r").unwrap().contains("1,A,60,,,,40\n"));
        let (t, _) = place(
            &parse("1,A,REMAIN,,,,40\n", "r.csv").unwrap(),
            1000,
            "r.csv",
        )
        .unwrap();
        assert!(t.partitions[0].fills_disk);
    }

    /// Fuzz regression (layout_csv): a row with the nil type GUID was placed;
    /// written to a GPT, its entry reads as unused and the partition is gone.
    #[test]
    fn fuzz_nil_guids_are_refused() {
        let nil = "00000000-0000-0000-0000-000000000000";
        for row in [format!("1,b,8,{nil},,,34\n"), format!("1,b,8,,{nil},,34\n")] {
            let e = parse(&row, "n.csv").unwrap_err().to_string();
            assert!(
                e.contains("n.csv:1: partition 'b': has the nil GUID"),
                "{e}"
            );
        }
    }

    /// Fuzz regression (layout_xml): an XML partition named `a,b` was written
    /// as a row of 8 fields, which no reader can take back.
    #[test]
    fn fuzz_names_a_row_cannot_carry_are_refused_when_writing() {
        let (mut t, _) = place(&parse("1,A,8,,,,40\n", "w").unwrap(), 1000, "w").unwrap();
        for bad in ["a,b", "a\nb", "a\r", " a"] {
            t.partitions[0].name = bad.into();
            let e = write(&t, "x.xml").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "x.xml: partition '{bad}': the name cannot be written"
                )),
                "{e}"
            );
        }
        t.partitions[0].name = "a b\tc".into();
        let back = parse(&write(&t, "x.xml").unwrap(), "y").unwrap();
        assert_eq!(back.rows[0].name, "a b\tc");
    }

    #[test]
    fn write_then_read_is_exact() {
        let text = "# sysinstall: first-usable-lba=40 disk-sectors=2000\n2,B,10,EF00,,,50\n1,A,10,,11111111-2222-3333-4444-555555555555,,40\n3,C,REMAIN,,,,64\n";
        let csv = parse(text, "x").unwrap();
        let (t, _) = place(&csv, csv.disk_sectors.unwrap(), "x").unwrap();
        assert_eq!(t.first_usable_lba, 40);
        let out = write(&t, "x").unwrap();
        let back = parse(&out, "y").unwrap();
        let (t2, _) = place(&back, back.disk_sectors.unwrap(), "y").unwrap();
        assert_eq!(t, t2);
        let rows: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            rows,
            [
                "1,A,10,,11111111-2222-3333-4444-555555555555,,40",
                "2,B,10,EF00,,,50",
                "3,C,REMAIN,,,,64"
            ]
        );
    }
}
