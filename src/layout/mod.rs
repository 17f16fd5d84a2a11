//! The layout engine: an L4T flash-layout XML (or a tegra-sysinstall
//! `partition_table` CSV) in, the exact eMMC partition table out.
//!
//! Pipeline, all pure:
//!
//! 1. [`xml`] reads the XML into [`xml::FlashLayout`]: devices and partition
//!    specs, every value still text, each with its source line.
//! 2. [`subst`] substitutes placeholders (`APPSIZE`, `MBPNAME`, ...) the way
//!    `flash.sh`/meta-tegra's `sed` would, then checks none are left.
//! 3. [`geometry`] places the partitions with NVIDIA's rules
//!    (docs/spec/flash-layout.md §2) into a [`PartitionTable`] for the user area
//!    and a [`BootArea`] for the boot device.
//! 4. [`render`] prints a table as `table`, `csv` or `json`.
//!
//! [`csv`] reads and writes the legacy `partition_table` format, and also
//! produces a [`PartitionTable`].
//!
//! Nothing here touches a device: the disk size is an input.

#![deny(clippy::indexing_slicing)]

pub mod csv;
pub mod geometry;
pub mod render;
pub mod subst;
pub mod xml;

use crate::guid::Guid;
use serde::Serialize;

/// Logical sector size of a device whose layout does not say (every eMMC,
/// every NVIDIA layout, the partition_table CSV's unit).
pub const SECTOR_SIZE: u64 = 512;
/// The sector sizes a user device may have: NVIDIA's tools place 512- and
/// 4096-byte-sector devices, each in its own unit (flash-layout.md §2.7).
pub const SECTOR_SIZES: [u64; 2] = crate::gpt::write::SECTOR_SIZES;
/// Entries in every GPT we write (NVIDIA and sgdisk both use 128).
pub const GPT_ENTRIES: u32 = crate::gpt::ENTRY_COUNT;
/// Size of one GPT entry in bytes.
pub const GPT_ENTRY_SIZE: u32 = crate::gpt::ENTRY_SIZE;
/// Bytes of a 128-entry GPT entry array.
pub const GPT_ENTRY_ARRAY_BYTES: u64 = crate::gpt::write::ENTRY_ARRAY_BYTES;
/// Sectors taken by a GPT header plus its 128-entry array at 512 bytes a
/// sector (1 + 32); [`gpt_sectors`] for any sector size.
pub const GPT_SECTORS: u64 = crate::gpt::write::BACKUP_SECTORS;
/// Bytes a primary GPT must at least have at 512 bytes a sector: header
/// sector + 128 × 128-byte entries; [`min_primary_gpt_bytes`] for any size.
pub const MIN_PRIMARY_GPT_BYTES: u64 = SECTOR_SIZE + GPT_ENTRY_ARRAY_BYTES;
/// Longest GPT partition name, in UTF-16 code units.
pub const MAX_NAME_UTF16: usize = crate::gpt::NAME_UNITS;
/// Largest disk of 512-byte sectors a table is placed on: 2^63 bytes, so
/// that every byte offset fits Linux's `loff_t` (i64) and `sectors × 512`
/// can never overflow a u64. A `--disk-sectors` or `num_sectors` above it is
/// a typo, not an eMMC. [`max_disk_sectors`] for any sector size.
pub const MAX_DISK_SECTORS: u64 = i64::MAX as u64 / SECTOR_SIZE;
/// The rule broken by a nil type or unique GUID.
pub const NIL_GUID: &str =
    "has the nil GUID 00000000-0000-0000-0000-000000000000, which marks an unused GPT entry";

/// Sectors of a GPT header plus its 128-entry array: 33 at 512 bytes a
/// sector, 5 at 4096.
pub fn gpt_sectors(sector_size: u64) -> u64 {
    crate::gpt::write::backup_sectors(sector_size)
}

/// The smallest `primary_gpt` NVIDIA accepts: one header sector and 128
/// entries, 16896 bytes at 512 bytes a sector, 20480 at 4096.
pub fn min_primary_gpt_bytes(sector_size: u64) -> u64 {
    sector_size + GPT_ENTRY_ARRAY_BYTES
}

/// The largest disk (2^63 bytes) in sectors of `sector_size` bytes.
pub fn max_disk_sectors(sector_size: u64) -> u64 {
    i64::MAX as u64 / sector_size.max(1)
}

/// One entry of a GPT partition table, as placed by the layout engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// GPT entry number, 1..=128. NVIDIA layouts number out of physical order.
    pub number: u32,
    /// GPT partition name.
    pub name: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Partition type GUID.
    pub type_guid: Guid,
    /// Unique partition GUID when the layout fixes one; `None` means "generate
    /// a random one when the table is written".
    pub unique_guid: Option<Guid>,
    /// True when the partition grew to fill the disk (`0x808` / `REMAIN`).
    pub fills_disk: bool,
}

impl Partition {
    /// A basic-data partition whose unique GUID is generated when written.
    pub fn basic_data(number: u32, name: &str, first_lba: u64, last_lba: u64) -> Partition {
        Partition {
            number,
            name: name.into(),
            first_lba,
            last_lba,
            type_guid: crate::guid::BASIC_DATA,
            unique_guid: None,
            fills_disk: false,
        }
    }

    /// Length in sectors. (A placed partition has `first_lba ≤ last_lba ≤
    /// max_disk_sectors(sector size)`, so neither this nor
    /// [`Self::size_bytes`] overflows.)
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    /// Length in bytes, on a disk of `sector_size`-byte sectors (the table's
    /// [`PartitionTable::sector_size`]).
    pub fn size_bytes(&self, sector_size: u64) -> u64 {
        self.sectors() * sector_size
    }
}

/// A complete user-area partition table for a disk of a known size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// Logical sector size in bytes, the unit of every LBA here: 512, or
    /// 4096 when the layout's user device says so.
    pub sector_size: u64,
    /// Size of the disk in sectors (`N`).
    pub disk_sectors: u64,
    /// First sector a partition may use: 1 + the sectors of the layout's
    /// `primary_gpt` (34, 40, 4097, ...), as NVIDIA's header says.
    pub first_usable_lba: u64,
    /// Last sector a partition may use: `N − 34` at 512 bytes a sector, the
    /// UEFI-correct value (the backup entry array starts at `N − 33`);
    /// `N − 6` at 4096. NVIDIA's header says `N − 33`; see `gpt` for why we
    /// write the correct one.
    pub last_usable_lba: u64,
    /// Partitions in GPT-number order.
    pub partitions: Vec<Partition>,
}

impl PartitionTable {
    /// The partition with this exact name.
    pub fn by_name(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The partition with this GPT entry number.
    pub fn by_number(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

/// Which boot device a layout's boot area describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootDeviceKind {
    /// eMMC boot0 + boot1 as one linear device (`sdmmc_boot`; T186, T194).
    SdmmcBoot,
    /// QSPI NOR flash (`spi`; Xavier NX, Orin, Nano-SD).
    Spi,
    /// The first `sdmmc` device of a T210 layout (eMMC boot0 + boot1).
    T210Sdmmc,
}

/// One partition of a boot device, in bytes from the start of the whole
/// (linear) boot device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootPartition {
    /// Partition name (after substitution).
    pub name: String,
    /// Byte offset from the start of the boot device.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The boot-device part of a layout: what `boot-partitions.conf` held for the
/// old tools, and what NVIDIA's pseudo-GPT on the boot device describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootArea {
    /// Which device this is.
    pub kind: BootDeviceKind,
    /// `num_sectors` from the XML, when it has one.
    pub num_sectors: Option<u64>,
    /// Partitions in layout order (which is also offset order).
    pub partitions: Vec<BootPartition>,
}

impl BootArea {
    /// The partition with this exact name.
    pub fn by_name(&self, name: &str) -> Option<&BootPartition> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

/// The SoC family a layout is for, as far as the layout can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Soc {
    /// TX2 family.
    T186,
    /// AGX Xavier, Xavier NX.
    T194,
    /// TX1, Nano.
    T210,
    /// AGX Orin, Orin NX/Nano.
    T234,
}

/// How to load a layout: placeholder values and the disk size.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--set NAME=VALUE` pairs, applied before the built-in defaults.
    pub set: Vec<(String, String)>,
    /// Size of the target disk in sectors of the layout's sector size
    /// (`--disk-sectors`); `None` means the device's size ([`load_on`]),
    /// else the XML's `num_sectors` (an error for a CSV, which has none).
    pub disk_sectors: Option<u64>,
}

/// The end of the rule a layout breaks when nothing gives the disk's size
/// (the XML has no `num_sectors`, or a CSV): callers with other options
/// (`bup`) recognise it and say theirs.
pub const NO_DISK_SIZE: &str = "give --disk-sectors or --device";

/// A target device as the layout loader needs it ([`load_on`]): its size
/// is divided by the layout's sector size, and a layout whose sector size
/// is not the device's logical block size is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSize {
    /// Its path, for messages.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its logical block size (BLKSSZGET); `None` for an image file, which
    /// takes the layout's sector size.
    pub logical_sector_size: Option<u64>,
}

/// A layout, loaded and placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Where it came from (the file name, for messages).
    pub source: String,
    /// The SoC family, when the layout tells.
    pub soc: Option<Soc>,
    /// The eMMC user-area partition table.
    pub user: PartitionTable,
    /// The boot device's partitions (XML layouts only).
    pub boot: Option<BootArea>,
    /// Remarks for the operator (e.g. the disk size differs from the XML's).
    pub notes: Vec<String>,
}

/// An invalid layout: one line naming the file, the partition (when there
/// is one), the line (when known) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct LayoutError {
    /// File name.
    pub file: String,
    /// Line in the file, 1-based.
    pub line: Option<u32>,
    /// Partition concerned.
    pub partition: Option<String>,
    /// The rule that was broken, as a sentence fragment.
    pub rule: String,
}

impl LayoutError {
    fn render(&self) -> String {
        let mut s = self.file.clone();
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
        }
        if let Some(p) = &self.partition {
            s.push_str(&format!(": partition '{p}'"));
        }
        s.push_str(": ");
        s.push_str(&self.rule);
        s
    }
}

/// Reads and places a layout file (XML or CSV, told apart by content).
pub fn load(path: &std::path::Path, opts: &LoadOptions) -> Result<Layout, LayoutError> {
    load_on(path, opts, None)
}

/// Reads and places a layout file for `device` (`--device`): the disk size
/// is the device's unless `opts.disk_sectors` says otherwise.
pub fn load_on(
    path: &std::path::Path,
    opts: &LoadOptions,
    device: Option<&DeviceSize>,
) -> Result<Layout, LayoutError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| LayoutError {
        file: file.clone(),
        line: None,
        partition: None,
        rule: format!("cannot be read: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| LayoutError {
        file: file.clone(),
        line: None,
        partition: None,
        rule: format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })?;
    parse_on(&text, &file, opts, device)
}

/// Places a layout given as text; `file` names it in errors. Text starting
/// with `<` is a flash-layout XML, anything else a partition_table CSV.
pub fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Layout, LayoutError> {
    parse_on(text, file, opts, None)
}

/// [`parse`] for `device` (see [`load_on`]).
pub fn parse_on(
    text: &str,
    file: &str,
    opts: &LoadOptions,
    device: Option<&DeviceSize>,
) -> Result<Layout, LayoutError> {
    if text.trim_start().starts_with('<') {
        parse_xml(text, file, opts, device)
    } else {
        parse_csv(text, file, opts, device)
    }
}

fn whole_file_error(file: &str, rule: impl Into<String>) -> LayoutError {
    LayoutError {
        file: file.to_owned(),
        line: None,
        partition: None,
        rule: rule.into(),
    }
}

/// The disk size in sectors of `sector_size` bytes that `opts.device`
/// gives, refusing a device whose logical block size is another.
fn device_sectors(
    device: Option<&DeviceSize>,
    sector_size: u64,
    refuse: impl Fn(String) -> LayoutError,
) -> Result<Option<u64>, LayoutError> {
    let Some(dev) = device else {
        return Ok(None);
    };
    if let Some(l) = dev.logical_sector_size.filter(|&l| l != sector_size) {
        return Err(refuse(format!(
            "the layout's sector size is {sector_size} bytes, but {} has {l}-byte logical sectors",
            dev.path
        )));
    }
    if dev.bytes % sector_size != 0 {
        return Err(refuse(format!(
            "{} is {} bytes, not a whole number of {sector_size}-byte sectors",
            dev.path, dev.bytes
        )));
    }
    Ok(Some(dev.bytes / sector_size))
}

fn parse_csv(
    text: &str,
    file: &str,
    opts: &LoadOptions,
    device: Option<&DeviceSize>,
) -> Result<Layout, LayoutError> {
    let csv = csv::parse(text, file)?;
    // The format counts 512-byte sectors (sgdisk's unit on every Jetson).
    let device = device_sectors(device, SECTOR_SIZE, |rule| whole_file_error(file, rule))?;
    let n = opts
        .disk_sectors
        .or(device)
        .or(csv.disk_sectors)
        .ok_or_else(|| {
            whole_file_error(
                file,
                format!("a partition_table CSV carries no disk size: {NO_DISK_SIZE}"),
            )
        })?;
    let (user, mut notes) = csv::place(&csv, n, file)?;
    notes.splice(0..0, csv.notes.iter().cloned());
    Ok(Layout {
        source: file.to_owned(),
        soc: None,
        user,
        boot: None,
        notes,
    })
}

/// The SoC family a layout is for, from the partitions it has (before
/// substitution): t210 layouts describe two `sdmmc` devices; t234 names its
/// boot chain `A_mb1`, `A_kernel`...; t194 has `mts-mce`/`MEM_BCT`; t186 has
/// the `mts-bootpack` (`MBPNAME`) Denver firmware.
pub fn detect_soc(layout: &xml::FlashLayout) -> Option<Soc> {
    if layout.devices.iter().any(|d| d.kind == "sdmmc") {
        return Some(Soc::T210);
    }
    let names: Vec<&str> = layout
        .devices
        .iter()
        .flat_map(|d| d.partitions.iter().map(|p| p.name()))
        .collect();
    let has = |f: &dyn Fn(&str) -> bool| names.iter().any(|n| f(n));
    if has(&|n| n == "A_mb1" || n == "A_kernel" || n.contains("psc_bl1")) {
        Some(Soc::T234)
    } else if has(&|n| n.contains("mts-mce") || n.contains("MEM_BCT") || n.contains("mts-proper")) {
        Some(Soc::T194)
    } else if has(&|n| n.contains("mts-bootpack") || n.contains("MBPNAME")) {
        Some(Soc::T186)
    } else {
        None
    }
}

/// Fields whose text must be free of placeholders once substituted.
const CHECKED_FIELDS: &[&str] = &[
    "size",
    "start_location",
    "align_boundary",
    "allocation_attribute",
    "unique_guid",
    "partition_type_guid",
];

fn check_leftovers(
    dev: &xml::DeviceSpec,
    subs: &subst::Substitutions,
    ctx: &geometry::LayoutFile<'_>,
) -> Result<(), LayoutError> {
    for p in &dev.partitions {
        if let Some(t) = subs.leftover(p.name()) {
            return Err(ctx.err(
                p.line,
                Some(p.name()),
                format!("name contains placeholder {t} with no value (give --set {t}=...)"),
            ));
        }
        for f in CHECKED_FIELDS {
            if let Some(t) = p.field(f).and_then(|v| subs.leftover(v)) {
                return Err(ctx.err(
                    p.line,
                    Some(p.name()),
                    format!("<{f}> contains placeholder {t} with no value (give --set {t}=...)"),
                ));
            }
        }
    }
    Ok(())
}

/// Placeholders `num_sectors` carries in R35/R36 t234 layouts (the eMMC,
/// an external or NVMe disk): the flashing tools put the real device's size
/// there, as we do.
pub const SIZE_PLACEHOLDERS: [&str; 3] = ["INT_NUM_SECTORS", "EXT_NUM_SECTORS", "NUM_SECTORS"];

fn parse_xml(
    text: &str,
    file: &str,
    opts: &LoadOptions,
    device: Option<&DeviceSize>,
) -> Result<Layout, LayoutError> {
    let mut layout = xml::parse(text).map_err(|e| LayoutError {
        file: file.to_owned(),
        line: Some(e.line),
        partition: None,
        rule: e.message,
    })?;
    let soc = detect_soc(&layout);
    let subs = subst::Substitutions::new(&opts.set, soc);
    subs.apply_to(&mut layout);
    let ctx = geometry::LayoutFile { file };

    let user_dev = geometry::user_device(&layout).ok_or_else(|| {
        whole_file_error(
            file,
            "no user-area device (sdmmc_user, the second sdmmc, sdcard, nvme or external)",
        )
    })?;
    check_leftovers(user_dev, &subs, &ctx)?;
    let sector_size = geometry::sector_size(&ctx, user_dev)?;
    let device = device_sectors(device, sector_size, |rule| {
        ctx.err(user_dev.line, None, rule)
    })?;
    let mut placeholder = None;
    let xml_sectors = match user_dev.attr("num_sectors") {
        Some(t) => match geometry::parse_c_number(t) {
            Some(n) => Some(n),
            None if SIZE_PLACEHOLDERS.contains(&t) => {
                placeholder = Some(t);
                None
            }
            None => {
                return Err(ctx.err(
                    user_dev.line,
                    None,
                    format!("num_sectors '{t}' is not a number"),
                ))
            }
        },
        None => None,
    };
    let mut notes = Vec::new();
    let n = match (opts.disk_sectors.or(device), xml_sectors) {
        (Some(n), Some(x)) if n != x => {
            notes.push(format!(
                "the disk has {n} sectors; the layout's num_sectors says {x}: placing for the disk"
            ));
            n
        }
        (Some(n), _) => n,
        (None, Some(x)) => x,
        (None, None) => {
            let what = match placeholder {
                Some(t) => format!("num_sectors is the placeholder {t}"),
                None => "the user-area device has no num_sectors".to_owned(),
            };
            return Err(ctx.err(user_dev.line, None, format!("{what}: {NO_DISK_SIZE}")));
        }
    };
    let (user, table_notes) = geometry::user_table(&ctx, user_dev, n, sector_size)?;
    notes.extend(table_notes);
    let boot = match geometry::boot_device(&layout) {
        Some((dev, kind)) if !std::ptr::eq(dev, user_dev) => {
            check_leftovers(dev, &subs, &ctx)?;
            Some(geometry::boot_area(&ctx, dev, kind, &mut notes)?)
        }
        _ => None,
    };
    Ok(Layout {
        source: file.to_owned(),
        soc,
        user,
        boot,
        notes,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::guid::{BASIC_DATA, EFI_SYSTEM};

    /// A user-area layout: MBR, primary GPT of `pg` bytes, then `parts`
    /// (each a `<partition ...>` body), on a disk of `n` sectors.
    fn xml(pg: &str, n: Option<u64>, parts: &[String]) -> String {
        let ns = n
            .map(|n| format!(" num_sectors=\"{n}\""))
            .unwrap_or_default();
        let mut s = format!(
            "<?xml version=\"1.0\"?>\n<partition_layout version=\"01.00.0000\">\n<device type=\"sdmmc_user\" instance=\"3\" sector_size=\"512\"{ns}>\n\
             <partition name=\"master_boot_record\" type=\"protective_master_boot_record\"><size> 512 </size></partition>\n\
             <partition name=\"primary_gpt\" type=\"primary_gpt\"><size> {pg} </size></partition>\n"
        );
        for p in parts {
            s.push_str(p);
            s.push('\n');
        }
        s.push_str("<partition name=\"secondary_gpt\" type=\"secondary_gpt\"><size> 0xFFFFFFFFFFFFFFFF </size></partition>\n</device>\n</partition_layout>\n");
        s
    }

    fn part(name: &str, attrs: &str, body: &str) -> String {
        format!("<partition name=\"{name}\" type=\"data\"{attrs}>{body}</partition>")
    }

    fn place(text: &str, n: Option<u64>) -> Result<Layout, LayoutError> {
        parse(
            text,
            "t.xml",
            &LoadOptions {
                set: vec![],
                disk_sectors: n,
            },
        )
    }

    fn err(text: &str, n: Option<u64>) -> String {
        place(text, n).unwrap_err().to_string()
    }

    const N: u64 = 1_000_000;

    #[test]
    fn first_usable_follows_the_primary_gpt_size() {
        for (pg, first) in [("16896", 34), ("19968", 40), ("2097152", 4097)] {
            let t = place(
                &xml(pg, Some(N), &[part("A", "", "<size>512</size>")]),
                None,
            )
            .unwrap();
            assert_eq!(t.user.first_usable_lba, first, "{pg}");
            assert_eq!(t.user.partitions[0].first_lba, first, "{pg}");
            assert_eq!(t.user.last_usable_lba, N - 34);
        }
    }

    #[test]
    fn primary_gpt_smaller_than_header_and_128_entries_is_refused() {
        let e = err(
            &xml("16384", Some(N), &[part("A", "", "<size>512</size>")]),
            None,
        );
        assert!(
            e.contains("primary GPT size 16384 bytes is smaller than 16896"),
            "{e}"
        );
        assert!(e.starts_with("t.xml:5: partition 'primary_gpt'"), "{e}");
    }

    #[test]
    fn sizes_round_up_and_alignment_applies_to_the_start() {
        let l = place(
            &xml(
                "16896",
                Some(N),
                &[
                    part("A", "", "<size> 618144 </size>"),
                    part(
                        "B",
                        "",
                        "<size>512</size><align_boundary> 4096 </align_boundary>",
                    ),
                    part("C", "", "<size>0x200</size>"),
                ],
            ),
            None,
        )
        .unwrap();
        let p = &l.user.partitions;
        assert_eq!((p[0].first_lba, p[0].last_lba), (34, 34 + 1208 - 1));
        assert_eq!(p[1].first_lba, 1248); // 1242 rounded up to 8 sectors
        assert_eq!(p[2].first_lba, 1249); // no alignment: right after
    }

    #[test]
    fn start_location_overrides_without_alignment_on_top() {
        let l = place(
            &xml(
                "16896",
                Some(N),
                &[
                    part("A", "", "<size>512</size>"),
                    part("B", "", "<size>512</size><start_location> 0x7E0200 </start_location><align_boundary>65536</align_boundary>"),
                ],
            ),
            None,
        )
        .unwrap();
        assert_eq!(l.user.partitions[1].first_lba, 0x7E0200 / 512);
    }

    #[test]
    fn start_location_behind_the_current_position_is_refused() {
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[
                    part("A", "", "<size>1048576</size>"),
                    part(
                        "B",
                        "",
                        "<size>512</size><start_location>1024</start_location>",
                    ),
                ],
            ),
            None,
        );
        assert!(e.contains("partition 'B': start_location 0x400 (sector 2) is behind the current position (sector 2082)"), "{e}");
    }

    #[test]
    fn ids_number_partitions_and_continue_from_the_last_one() {
        let l = place(
            &xml(
                "16896",
                Some(N),
                &[
                    part("M", " id=\"6\"", "<size>512</size>"),
                    part("N", "", "<size>512</size>"),
                    part("A", " id=\"1\"", "<size>512</size>"),
                    part("B", "", "<size>512</size>"),
                ],
            ),
            None,
        )
        .unwrap();
        let numbers: Vec<(u32, &str)> = l
            .user
            .partitions
            .iter()
            .map(|p| (p.number, p.name.as_str()))
            .collect();
        assert_eq!(numbers, [(1, "A"), (2, "B"), (6, "M"), (7, "N")]);
    }

    #[test]
    fn duplicate_and_out_of_range_ids_are_refused() {
        let dup = err(
            &xml(
                "16896",
                Some(N),
                &[
                    part("A", " id=\"2\"", "<size>512</size>"),
                    part("B", " id=\"2\"", "<size>512</size>"),
                ],
            ),
            None,
        );
        assert!(
            dup.contains("partition 'B': id 2 is already used by 'A'"),
            "{dup}"
        );
        let implicit = err(
            &xml(
                "16896",
                Some(N),
                &[
                    part("A", " id=\"2\"", "<size>512</size>"),
                    part("B", " id=\"1\"", "<size>512</size>"),
                    part("C", "", "<size>512</size>"),
                ],
            ),
            None,
        );
        assert!(
            implicit.contains("partition 'C': id 2 is already used by 'A'"),
            "{implicit}"
        );
        for id in ["0", "129"] {
            let e = err(
                &xml(
                    "16896",
                    Some(N),
                    &[part("A", &format!(" id=\"{id}\""), "<size>512</size>")],
                ),
                None,
            );
            assert!(
                e.contains(&format!("id {id} is out of range [1, 128]")),
                "{e}"
            );
        }
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[part("A", " id=\"x\"", "<size>512</size>")],
            ),
            None,
        );
        assert!(e.contains("id 'x' is not a number"), "{e}");
    }

    #[test]
    fn fill_partition_ends_before_the_backup_gpt_whatever_its_size() {
        for size in [
            "",
            "<size>18432</size>",
            "<size>-1</size>",
            "<size>1073741824</size>",
        ] {
            let l = place(
                &xml(
                    "16896",
                    Some(N),
                    &[part("UDA", "", &format!("{size}<allocation_attribute>0x808</allocation_attribute><align_boundary>4096</align_boundary>"))],
                ),
                None,
            )
            .unwrap();
            let p = &l.user.partitions[0];
            assert_eq!((p.first_lba, p.last_lba), (40, N - 34), "{size}");
            assert!(p.fills_disk);
        }
    }

    #[test]
    fn only_exactly_0x808_fills() {
        for (attr, fills) in [
            ("0x808", true),
            ("0X808", true),
            ("2056", true),
            ("04010", true),
            ("808", false),
            ("0x809", false),
            ("0x818", false),
            ("0x1808", false),
            ("8", false),
        ] {
            let l = place(
                &xml(
                    "16896",
                    Some(N),
                    &[part(
                        "A",
                        "",
                        &format!(
                            "<size>512</size><allocation_attribute>{attr}</allocation_attribute>"
                        ),
                    )],
                ),
                None,
            )
            .unwrap();
            assert_eq!(l.user.partitions[0].fills_disk, fills, "{attr}");
        }
    }

    #[test]
    fn fixed_partition_after_the_fill_is_refused() {
        let fill = part(
            "UDA",
            "",
            "<allocation_attribute>0x808</allocation_attribute>",
        );
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[fill.clone(), part("B", "", "<size>512</size>")],
            ),
            None,
        );
        assert!(
            e.contains("partition 'B': comes after 'UDA', which fills the rest of the disk"),
            "{e}"
        );
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[
                    fill,
                    part(
                        "U2",
                        "",
                        "<allocation_attribute>0x808</allocation_attribute>",
                    ),
                ],
            ),
            None,
        );
        assert!(e.contains("partition 'U2': comes after 'UDA'"), "{e}");
    }

    #[test]
    fn partition_past_the_end_of_the_disk_is_refused() {
        let body = [part("A", "", "<size>1048576</size>")];
        // 2048 sectors of A end at 2081; the last usable sector is N - 34.
        assert!(place(&xml("16896", Some(2081 + 34), &body), None).is_ok());
        let e = err(&xml("16896", Some(2081 + 33), &body), None);
        assert!(e.contains("partition 'A': ends at sector 2081, past the last usable sector 2080 of a 2114-sector disk"), "{e}");
    }

    #[test]
    fn the_disk_size_comes_from_the_caller_then_the_xml() {
        let text = xml(
            "16896",
            Some(N),
            &[part(
                "A",
                "",
                "<allocation_attribute>0x808</allocation_attribute>",
            )],
        );
        let l = place(&text, Some(2 * N)).unwrap();
        assert_eq!(l.user.partitions[0].last_lba, 2 * N - 34);
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("num_sectors says 1000000")),
            "{:?}",
            l.notes
        );
        let e = err(
            &xml("16896", None, &[part("A", "", "<size>512</size>")]),
            None,
        );
        assert!(
            e.contains("no num_sectors: give --disk-sectors or --device"),
            "{e}"
        );
        assert!(place(
            &xml("16896", None, &[part("A", "", "<size>512</size>")]),
            Some(N)
        )
        .is_ok());
    }

    #[test]
    fn zero_length_partitions_are_refused() {
        for body in ["", "<size></size>", "<size>0</size>"] {
            let e = err(&xml("16896", Some(N), &[part("A", "", body)]), None);
            assert!(
                e.contains("partition 'A': has a size of zero"),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn names_longer_than_36_utf16_units_are_cut_like_nvidia_with_a_note() {
        let ok = "é".repeat(36); // 36 units, 72 bytes
        let l = place(
            &xml("16896", Some(N), &[part(&ok, "", "<size>512</size>")]),
            None,
        )
        .unwrap();
        assert_eq!(l.user.partitions[0].name, ok);
        assert!(l.notes.is_empty(), "{:?}", l.notes);

        let long = format!("{}-tail", "a".repeat(36));
        let l = place(
            &xml("16896", Some(N), &[part(&long, "", "<size>512</size>")]),
            None,
        )
        .unwrap();
        assert_eq!(l.user.partitions[0].name, "a".repeat(36));
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains(&format!("partition '{long}'"))
                    && n.contains("41 UTF-16 units long")
                    && n.contains(&format!("cut to '{}'", "a".repeat(36)))),
            "{:?}",
            l.notes
        );
        // A character outside the BMP takes two units and is never split.
        let astral = format!("{}😀x", "b".repeat(35));
        let l = place(
            &xml("16896", Some(N), &[part(&astral, "", "<size>512</size>")]),
            None,
        )
        .unwrap();
        assert_eq!(l.user.partitions[0].name, "b".repeat(35));
        // Two names equal once cut are one name twice.
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[
                    part(&format!("{}1", "c".repeat(36)), "", "<size>512</size>"),
                    part(&format!("{}2", "c".repeat(36)), "", "<size>512</size>"),
                ],
            ),
            None,
        );
        assert!(e.contains("name is already used by partition 1"), "{e}");
        let e = err(
            &xml("16896", Some(N), &[part("", "", "<size>512</size>")]),
            None,
        );
        assert!(e.contains("partition has no name"), "{e}");
    }

    /// `plan` against a disk NVIDIA flashed: its GPT holds the cut name, and
    /// the layout's table must say the same so nothing is renamed.
    #[test]
    fn a_cut_name_plans_as_kept_against_an_nvidia_flashed_disk() {
        use crate::gpt::write::build;
        use crate::repartition::{self, Current, PartitionAction};
        let long = format!("{}_and_more", "reserved_for_chain_a".repeat(2));
        let l = place(
            &xml(
                "16896",
                Some(N),
                &[
                    part(&long, "", "<size>1048576</size>"),
                    part("APP", "", "<size>1048576</size>"),
                ],
            ),
            None,
        )
        .unwrap();
        // The disk as NVIDIA's tools wrote it: the same places, the cut name.
        let mut flashed = l.user.clone();
        flashed.partitions[0].name = long.chars().take(36).collect();
        let gpt = build(&flashed, None).unwrap();
        let disk = crate::gpt::read::DiskGpt {
            header: gpt.header.clone(),
            entries: gpt.entries.clone(),
            copy: crate::gpt::read::GptCopy::Primary,
            other_copy_problem: None,
        };
        let plan = repartition::plan(Current::Gpt(&disk, &Default::default()), &l.user);
        assert!(
            plan.partitions
                .iter()
                .all(|p| p.action == PartitionAction::Keep && p.changes.is_empty()),
            "{plan:?}"
        );
    }

    #[test]
    fn placeholders_and_non_numeric_sizes_are_named() {
        let e = err(
            &xml(
                "16896",
                Some(N),
                &[part("APP", "", "<size> APPSIZE </size>")],
            ),
            None,
        );
        assert!(e.contains("partition 'APP': <size> contains placeholder APPSIZE with no value (give --set APPSIZE=...)"), "{e}");
        let e = err(
            &xml("16896", Some(N), &[part("A", "", "<size> 12MB </size>")]),
            None,
        );
        assert!(
            e.contains("partition 'A': <size> '12MB' is not a number"),
            "{e}"
        );
        let e = err(
            &xml("PPTSIZE", Some(N), &[part("A", "", "<size>512</size>")]),
            None,
        );
        assert!(e.contains("placeholder PPTSIZE"), "{e}");
        let set = LoadOptions {
            set: vec![("APPSIZE".into(), "1048576".into())],
            disk_sectors: None,
        };
        let l = parse(
            &xml(
                "16896",
                Some(N),
                &[part("APP", "", "<size> APPSIZE </size>")],
            ),
            "t.xml",
            &set,
        )
        .unwrap();
        assert_eq!(l.user.partitions[0].sectors(), 2048);
    }

    #[test]
    fn type_and_unique_guids() {
        let g = "11111111-2222-3333-4444-555555555555";
        let l = place(
            &xml(
                "16896",
                Some(N),
                &[
                    part("esp", "", "<size>512</size><partition_type_guid> C12A7328-F81F-11D2-BA4B-00A0C93EC93B </partition_type_guid>"),
                    part("A", "", &format!("<size>512</size><unique_guid> {g} </unique_guid>")),
                    part("B", "", &format!("<size>512</size><unique_guid>{g}</unique_guid>")),
                    part("C", "", "<size>512</size><unique_guid> APPUUID </unique_guid>"),
                ],
            ),
            None,
        )
        .unwrap();
        let p = &l.user.partitions;
        assert_eq!(p[0].type_guid, EFI_SYSTEM);
        assert_eq!(p[1].type_guid, BASIC_DATA);
        assert_eq!(p[1].unique_guid, Some(Guid::parse(g).unwrap()));
        assert_eq!(p[2].unique_guid, None, "duplicate GUID is regenerated");
        assert!(l.notes.iter().any(|n| n.contains("partition 'B'")));
        assert_eq!(p[3].unique_guid, None, "APPUUID defaults to empty: random");
    }

    /// meta-tegra and flash.sh substitute `APPUUID` with an empty string, so
    /// every A/B flash.xml they make says `<unique_guid> _b </unique_guid>`;
    /// NVIDIA's tools accept it. So do we: a random GUID, and a note.
    #[test]
    fn a_unique_guid_that_is_not_a_guid_gets_a_random_one_with_a_note() {
        for text in [
            "_b",
            "garbage",
            "1234",
            "11111111-2222-3333-4444-55555555555",
        ] {
            let l = place(
                &xml(
                    "16896",
                    Some(N),
                    &[
                        part("APP", "", "<size>512</size><unique_guid>  </unique_guid>"),
                        part(
                            "APP_b",
                            "",
                            &format!("<size>512</size><unique_guid> {text} </unique_guid>"),
                        ),
                    ],
                ),
                None,
            )
            .unwrap();
            let b = l.user.by_name("APP_b").unwrap();
            assert_eq!(b.unique_guid, None, "{text}");
            assert!(
                l.notes.iter().any(|n| n.contains(&format!(
                    "partition 'APP_b': unique_guid '{text}' is not a GUID"
                )) && n.contains("random")),
                "{text}: {:?}",
                l.notes
            );
            // Written, it gets a random GUID of its own.
            let gpt = crate::gpt::write::build(&l.user, None).unwrap();
            let guids: std::collections::BTreeSet<_> =
                gpt.entries.iter().map(|(_, e)| e.unique_guid).collect();
            assert_eq!(guids.len(), 2);
            assert!(!guids.contains(&Guid::NIL));
        }
    }

    /// Where NVIDIA writes zero-length or overflowing entries we refuse
    /// (README "what is refused"): each rule, named.
    #[test]
    fn sizes_that_overflow_the_disk_or_the_sector_count_are_refused() {
        for (body, want) in [
            (
                "<size>0xFFFFFFFFFFFFFFFF</size>",
                "partition 'A': ends at sector",
            ),
            (
                "<size>512</size><start_location>0xFFFFFFFFFFFFFE00</start_location>",
                "partition 'A': ends at sector",
            ),
            (
                "<size>0xFFFFFFFFFFFFFFFF</size><start_location>0xFFFFFFFFFFFFFE00</start_location>",
                "partition 'A': ends at sector 72057594037927934, past the last usable sector",
            ),
            (
                "<size>512</size><align_boundary>0x8000000000000000</align_boundary>",
                "partition 'A': ends at sector 18014398509481984, past the last usable",
            ),
        ] {
            let e = err(&xml("16896", Some(N), &[part("A", "", body)]), None);
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn structural_problems_are_refused() {
        let e = err(
            "<partition_layout><device type=\"spi\" num_sectors=\"1000\"/></partition_layout>",
            None,
        );
        assert!(e.contains("no user-area device"), "{e}");
        let e = err("<partition_layout>\n<device type=\"sdmmc_user\" num_sectors=\"100000\">\n<partition name=\"A\" type=\"data\"><size>512</size></partition>\n</device></partition_layout>", None);
        assert!(
            e.contains("partition 'A': comes before the primary_gpt entry"),
            "{e}"
        );
        let e = err("<partition_layout>\n<device type=\"sdmmc_user\" num_sectors=\"100000\">\n<partition name=\"A\" type=\"data\"\n", None);
        assert!(e.starts_with("t.xml:"), "{e}");
        let e = err("<partition_layout>\n<device type=\"sdmmc_user\">\n  <partition name=\"A\" type=\"data\"><size>1</size></sise>\n</device></partition_layout>", None);
        assert!(e.starts_with("t.xml:3: malformed XML"), "{e}");
    }

    #[test]
    fn t210_gp1_takes_34_sectors_whatever_its_size() {
        let text = "<partition_layout>\n<device type=\"sdmmc\" instance=\"3\"><partition name=\"BCT\" type=\"boot_config_table\"><size>1048576</size></partition></device>\n\
            <device type=\"sdmmc\" instance=\"3\">\n<partition name=\"GP1\" type=\"GP1\"><size> 2097152 </size></partition>\n\
            <partition name=\"DXB\" type=\"data\" id=\"6\"><size>1048576</size></partition>\n\
            <partition name=\"APP\" type=\"data\" id=\"1\"><size>APPSIZE</size></partition>\n\
            <partition name=\"GPT\" type=\"GPT\"><size>-1</size></partition>\n</device></partition_layout>";
        let opts = LoadOptions {
            set: vec![("APPSIZE".into(), "1048576".into())],
            disk_sectors: Some(N),
        };
        let l = parse(text, "nano.xml", &opts).unwrap();
        assert_eq!(l.soc, Some(Soc::T210));
        assert_eq!(l.user.first_usable_lba, 34);
        assert_eq!(l.user.by_name("DTB").unwrap().first_lba, 34);
        assert_eq!(l.user.by_name("APP").unwrap().first_lba, 34 + 2048);
        let boot = l.boot.unwrap();
        assert_eq!(boot.kind, BootDeviceKind::T210Sdmmc);
        assert_eq!(boot.partitions[0].name, "BCT");
    }

    /// Fuzz regression (layout_csv, same rule here): a nil type or unique
    /// GUID was placed; in the GPT the entry would read as unused.
    #[test]
    fn fuzz_nil_guids_are_refused() {
        let nil = "00000000-0000-0000-0000-000000000000";
        for (field, want) in [
            (
                "partition_type_guid",
                "partition 'A': partition_type_guid has the nil GUID",
            ),
            ("unique_guid", "partition 'A': unique_guid has the nil GUID"),
        ] {
            let body = format!("<size>512</size><{field}>{nil}</{field}>");
            let e = err(&xml("16896", Some(N), &[part("A", "", &body)]), None);
            assert!(e.contains(want), "{e}");
        }
    }

    /// Fuzz regression (layout_xml, layout_csv): a disk of u64::MAX sectors
    /// was placed, and anything computing its size in bytes (`render::table`)
    /// then overflowed.
    #[test]
    fn fuzz_disk_larger_than_2_63_bytes_is_refused() {
        let body = [part("A", "", "<size>512</size>")];
        for n in [u64::MAX, MAX_DISK_SECTORS + 1] {
            let e = err(&xml("16896", Some(n), &body), None);
            assert!(e.contains("larger than 2^63 bytes"), "{e}");
            let e = parse(
                "1,APP,8,,,,34\n",
                "p.csv",
                &LoadOptions {
                    set: vec![],
                    disk_sectors: Some(n),
                },
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("larger than 2^63 bytes"), "{e}");
        }
        let l = place(&xml("16896", None, &body), Some(MAX_DISK_SECTORS)).unwrap();
        assert!(render::table(&l.user, "t.xml").contains(&MAX_DISK_SECTORS.to_string()));
    }

    #[test]
    fn csv_input_is_recognised() {
        let l = parse(
            "1,APP,8,,,,34\n",
            "p.csv",
            &LoadOptions {
                set: vec![],
                disk_sectors: Some(100),
            },
        )
        .unwrap();
        assert_eq!(l.user.partitions[0].last_lba, 41);
        let e = parse("1,APP,8,,,,34\n", "p.csv", &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("carries no disk size"), "{e}");
    }

    /// A layout whose user device is `<device type="{kind}" sector_size="{ss}" num_sectors="{ns}">`
    /// (attributes left out when `None`), with an MBR, a primary GPT of `pg`
    /// bytes, `parts`, and a secondary GPT; `before` goes before it (a QSPI).
    fn device_xml(
        kind: &str,
        ss: Option<&str>,
        ns: Option<&str>,
        pg: &str,
        parts: &[String],
        before: &str,
    ) -> String {
        let attr =
            |k: &str, v: Option<&str>| v.map(|v| format!(" {k}=\"{v}\"")).unwrap_or_default();
        let mut s = format!(
            "<?xml version=\"1.0\"?>\n<partition_layout version=\"01.00.0000\">\n{before}<device type=\"{kind}\" instance=\"0\"{}{}>\n\
             <partition name=\"master_boot_record\" type=\"protective_master_boot_record\"><size> 512 </size></partition>\n\
             <partition name=\"primary_gpt\" type=\"primary_gpt\"><size> {pg} </size></partition>\n",
            attr("sector_size", ss),
            attr("num_sectors", ns)
        );
        for p in parts {
            s.push_str(p);
            s.push('\n');
        }
        s.push_str("<partition name=\"secondary_gpt\" type=\"secondary_gpt\"><size> 0xFFFFFFFFFFFFFFFF </size></partition>\n</device>\n</partition_layout>\n");
        s
    }

    fn dev(bytes: u64, logical: Option<u64>) -> DeviceSize {
        DeviceSize {
            path: "/dev/nvme0n1".into(),
            bytes,
            logical_sector_size: logical,
        }
    }

    #[test]
    fn four_kib_sectors_are_placed_by_nvidias_rules_in_their_unit() {
        let n = 250_000; // about 1 GB of 4096-byte sectors
        let text = device_xml(
            "sdmmc_user",
            Some("4096"),
            Some(&n.to_string()),
            "20480",
            &[
                part("A", "", "<size>1048576</size>"),
                part("B", "", "<size>5000</size>"),
                part(
                    "C",
                    "",
                    "<size>4096</size><align_boundary>16384</align_boundary>",
                ),
                part(
                    "D",
                    "",
                    "<size>4096</size><start_location>0x200000</start_location>",
                ),
                part(
                    "UDA",
                    "",
                    "<allocation_attribute>0x808</allocation_attribute>",
                ),
            ],
            "",
        );
        let l = place(&text, None).unwrap();
        let t = &l.user;
        assert_eq!(t.sector_size, 4096);
        // MBR (1) + header (1) + 16 KiB of entries (4): 20480 bytes = 5 sectors.
        assert_eq!(t.first_usable_lba, 6);
        // The backup: entries N-5..N-2, header N-1; fill and usable end at N-6.
        assert_eq!(t.last_usable_lba, n - 6);
        let span = |name: &str| {
            let p = t.by_name(name).unwrap();
            (p.first_lba, p.last_lba)
        };
        assert_eq!(span("A"), (6, 6 + 256 - 1));
        assert_eq!(span("B"), (262, 263), "5000 bytes round up to 2 sectors");
        assert_eq!(span("C"), (264, 264), "264 is a multiple of 4 sectors");
        assert_eq!(span("D"), (512, 512), "0x200000 / 4096");
        assert_eq!(span("UDA"), (513, n - 6));
        assert_eq!(t.by_name("A").unwrap().size_bytes(t.sector_size), 1 << 20);
        // The 2 MiB primary GPT of a stock TX2 layout: 1 + 512 sectors.
        let l = place(
            &device_xml(
                "sdmmc_user",
                Some("4096"),
                Some("250000"),
                "2097152",
                &[part("A", "", "<size>1</size>")],
                "",
            ),
            None,
        )
        .unwrap();
        assert_eq!(l.user.first_usable_lba, 513);
        // GP1 of a t210 layout: the MBR and a standard primary GPT.
        let e = err(
            &device_xml(
                "sdmmc_user",
                Some("4096"),
                Some("250000"),
                "19968",
                &[part("A", "", "<size>1</size>")],
                "",
            ),
            None,
        );
        assert!(
            e.contains("partition 'primary_gpt': primary GPT size 19968 bytes is smaller than 20480 (5 sectors of 4096 bytes"),
            "{e}"
        );
        let e = err(
            &device_xml(
                "sdmmc_user",
                Some("4096"),
                Some("250000"),
                "20480",
                &[part(
                    "A",
                    "",
                    "<size>1</size><align_boundary>2048</align_boundary>",
                )],
                "",
            ),
            None,
        );
        assert!(
            e.contains("<align_boundary> 2048 is not a multiple of 4096 bytes"),
            "{e}"
        );
        // The 512-byte numbers of the same layout, for comparison.
        let l = place(
            &device_xml(
                "sdmmc_user",
                None,
                Some("2000000"),
                "20480",
                &[part("A", "", "<size>1048576</size>")],
                "",
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            (
                l.user.sector_size,
                l.user.first_usable_lba,
                l.user.last_usable_lba
            ),
            (512, 41, 2000000 - 34)
        );
    }

    #[test]
    fn sector_sizes_other_than_512_and_4096_are_refused_naming_the_field() {
        for bad in ["1024", "2048", "0", "abc", "", "512 bytes"] {
            let e = err(
                &device_xml(
                    "sdmmc_user",
                    Some(bad),
                    Some("1000000"),
                    "16896",
                    &[part("A", "", "<size>512</size>")],
                    "",
                ),
                None,
            );
            assert!(
                e.starts_with(&format!(
                    "t.xml:3: sector_size '{bad}' of the sdmmc_user device is not 512 or 4096"
                )),
                "{bad}: {e}"
            );
        }
        for (good, ss) in [("512", 512), ("0x1000", 4096), ("4096", 4096)] {
            let l = place(
                &device_xml(
                    "sdmmc_user",
                    Some(good),
                    Some("1000000"),
                    "20480",
                    &[part("A", "", "<size>512</size>")],
                    "",
                ),
                None,
            )
            .unwrap();
            assert_eq!(l.user.sector_size, ss, "{good}");
        }
        // A boot device's table counts 512-byte sectors: nothing else is placed.
        let qspi = "<device type=\"spi\" instance=\"0\" sector_size=\"4096\" num_sectors=\"16384\">\n<partition name=\"BCT\" type=\"boot_config_table\"><size>1048576</size></partition>\n</device>\n";
        let e = err(
            &device_xml(
                "sdmmc_user",
                None,
                Some("1000000"),
                "16896",
                &[part("A", "", "<size>512</size>")],
                qspi,
            ),
            None,
        );
        assert!(
            e.contains("t.xml:3: sector_size 4096 of the spi boot device"),
            "{e}"
        );
    }

    #[test]
    fn the_device_gives_the_size_in_the_layouts_unit_and_must_share_its_sector_size() {
        let text = |ss: &str| {
            device_xml(
                "sdmmc_user",
                Some(ss),
                None,
                "20480",
                &[part(
                    "UDA",
                    "",
                    "<allocation_attribute>0x808</allocation_attribute>",
                )],
                "",
            )
        };
        let on = |t: &str, d: &DeviceSize, n: Option<u64>| {
            parse_on(
                t,
                "t.xml",
                &LoadOptions {
                    set: vec![],
                    disk_sectors: n,
                },
                Some(d),
            )
        };
        let bytes = 1u64 << 32;
        let l = on(&text("4096"), &dev(bytes, Some(4096)), None).unwrap();
        assert_eq!(l.user.disk_sectors, bytes / 4096);
        assert_eq!(l.user.partitions[0].last_lba, bytes / 4096 - 6);
        // An image file takes the layout's unit.
        let l = on(&text("4096"), &dev(bytes, None), None).unwrap();
        assert_eq!(l.user.disk_sectors, bytes / 4096);
        let l = on(&text("512"), &dev(bytes, None), None).unwrap();
        assert_eq!(l.user.disk_sectors, bytes / 512);
        // --disk-sectors wins.
        let l = on(&text("4096"), &dev(bytes, Some(4096)), Some(1000)).unwrap();
        assert_eq!(l.user.disk_sectors, 1000);
        for (ss, logical) in [("4096", 512), ("512", 4096)] {
            let e = on(&text(ss), &dev(bytes, Some(logical)), None)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("t.xml:3: the layout's sector size is {ss} bytes, but /dev/nvme0n1 has {logical}-byte logical sectors")),
                "{e}"
            );
        }
        let e = on(&text("4096"), &dev(bytes + 512, None), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a whole number of 4096-byte sectors"), "{e}");
        // A partition_table CSV counts 512-byte sectors.
        let csv = "1,APP,8,,,,34\n";
        let e = on(csv, &dev(bytes, Some(4096)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 4096-byte logical sectors"), "{e}");
        assert_eq!(
            on(csv, &dev(bytes, Some(512)), None)
                .unwrap()
                .user
                .disk_sectors,
            bytes / 512
        );
        let four_k = on(&text("4096"), &dev(bytes, None), None).unwrap();
        let e = csv::write(&four_k.user, "t.xml").unwrap_err().to_string();
        assert!(
            e.contains("counts 512-byte sectors; this table has 4096-byte sectors"),
            "{e}"
        );
    }

    /// R35/R36 t234 layouts for NVMe (`external`, `nvme`) and the eMMC
    /// (`sdmmc_user`) carry a size placeholder the flashing tools fill with
    /// the real device's size: so do we, from --device or --disk-sectors.
    #[test]
    fn t234_user_devices_take_the_size_placeholder_from_the_disk() {
        let qspi = "<device type=\"spi\" instance=\"0\" sector_size=\"512\" num_sectors=\"131072\">\n\
            <partition name=\"BCT\" type=\"boot_config_table\"><size>1048576</size></partition>\n\
            <partition name=\"A_mb1\" type=\"mb1_bootloader\"><size>524288</size><align_boundary>262144</align_boundary></partition>\n\
            <partition name=\"secondary_gpt\" type=\"secondary_gpt\"><size>0xFFFFFFFFFFFFFFFF</size></partition>\n</device>\n";
        let parts = [
            part("A_kernel", " id=\"2\"", "<size>134217728</size>"),
            part("esp", "", "<size>67108864</size><partition_type_guid>C12A7328-F81F-11D2-BA4B-00A0C93EC93B</partition_type_guid>"),
            part("APP", " id=\"1\"", "<size>APPSIZE</size><align_boundary>16384</align_boundary>"),
        ];
        let n = 490_733_568u64;
        for (kind, token, before) in [
            ("external", "EXT_NUM_SECTORS", ""),
            ("nvme", "EXT_NUM_SECTORS", qspi),
            ("sdmmc_user", "INT_NUM_SECTORS", qspi),
            ("external", "NUM_SECTORS", ""),
        ] {
            let text = device_xml(kind, Some("512"), Some(token), "19968", &parts, before);
            let set = vec![("APPSIZE".to_owned(), "1073741824".to_owned())];
            let opts = |n: Option<u64>| LoadOptions {
                set: set.clone(),
                disk_sectors: n,
            };
            let e = parse(&text, "t.xml", &opts(None)).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("t.xml:{}: num_sectors is the placeholder {token}: give --disk-sectors or --device", if before.is_empty() { 3 } else { 8 })),
                "{kind}: {e}"
            );
            let l = parse(&text, "t.xml", &opts(Some(n))).unwrap();
            assert_eq!(l.soc, Some(Soc::T234), "{kind}");
            assert_eq!(l.user.disk_sectors, n);
            assert_eq!(l.user.first_usable_lba, 40);
            let app = l.user.by_name("APP").unwrap();
            assert_eq!(app.number, 1);
            // After A_kernel and esp, rounded up to 32 sectors (16 KiB).
            assert_eq!(
                app.first_lba,
                (40u64 + 262144 + 131072).div_ceil(32) * 32,
                "APP last"
            );
            assert_eq!(l.user.by_name("esp").unwrap().type_guid, EFI_SYSTEM);
            // The device gives it too; and --set, as sed would.
            let l = parse_on(&text, "t.xml", &opts(None), Some(&dev(n * 512, Some(512)))).unwrap();
            assert_eq!(l.user.disk_sectors, n);
            let mut with = set.clone();
            with.push((token.to_owned(), "123456789".to_owned()));
            let l = parse(
                &text,
                "t.xml",
                &LoadOptions {
                    set: with,
                    disk_sectors: None,
                },
            )
            .unwrap();
            assert_eq!(l.user.disk_sectors, 123456789);
            // The QSPI is read, as the boot device, never as the user area.
            match before.is_empty() {
                true => assert!(l.boot.is_none()),
                false => {
                    let b = l.boot.unwrap();
                    assert_eq!(b.kind, BootDeviceKind::Spi);
                    assert_eq!(b.num_sectors, Some(131072));
                    assert_eq!(b.by_name("A_mb1").unwrap().offset, 1048576);
                    assert!(l.user.by_name("BCT").is_none());
                }
            }
        }
    }

    /// The GPT of an NVMe layout, at both sector sizes: header fields, the
    /// backup's place, APP numbered 1 and last, the ESP's type.
    #[test]
    fn gpt_of_an_nvme_layout_at_512_and_4096() {
        let parts = [
            part("A_kernel", " id=\"2\"", "<size>134217728</size>"),
            part("esp", "", "<size>67108864</size><partition_type_guid>C12A7328-F81F-11D2-BA4B-00A0C93EC93B</partition_type_guid>"),
            part("APP", " id=\"1\"", "<size>1073741824</size><align_boundary>16384</align_boundary>"),
        ];
        for (ss, pg, first_usable, backup_entries) in
            [(512u64, "19968", 40u64, 33u64), (4096, "20480", 6, 5)]
        {
            let bytes = 64u64 << 30;
            let n = bytes / ss;
            let text = device_xml(
                "nvme",
                Some(&ss.to_string()),
                Some("EXT_NUM_SECTORS"),
                pg,
                &parts,
                "",
            );
            let l = parse_on(
                &text,
                "nvme.xml",
                &LoadOptions::default(),
                Some(&dev(bytes, Some(ss))),
            )
            .unwrap();
            let gpt = crate::gpt::write::build(&l.user, None).unwrap();
            let h = &gpt.header;
            assert_eq!(gpt.sector_size, ss);
            assert_eq!(
                (h.my_lba, h.alternate_lba, h.partition_entry_lba),
                (1, n - 1, 2)
            );
            assert_eq!(
                (h.first_usable_lba, h.last_usable_lba),
                (first_usable, n - backup_entries - 1)
            );
            assert_eq!(gpt.backup_entry_lba(), n - backup_entries);
            let (num, app) = gpt.entries.first().unwrap();
            assert_eq!((*num, app.name.as_str()), (1, "APP"));
            let kernel = &gpt.entries[1].1;
            assert_eq!(kernel.first_lba, first_usable);
            assert_eq!(app.first_lba * ss % 16384, 0);
            assert_eq!((app.last_lba + 1 - app.first_lba) * ss, 1 << 30);
            assert!(app.first_lba > kernel.last_lba);
            assert_eq!(gpt.entries[2].1.type_guid, EFI_SYSTEM);
        }
    }
}
