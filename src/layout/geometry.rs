//! Placing partitions exactly where NVIDIA's tools put them
//! (docs/spec/flash-layout.md §2, verified against `tegraparser_v2`).
//!
//! User area (`sdmmc_user`, or the second `sdmmc` device of a t210 layout):
//!
//! Everything is counted in sectors of the device's `sector_size` (`ss`,
//! 512 or 4096; flash-layout.md §2.7); the numbers below are for 512.
//!
//! * `cur` counts sectors from LBA 0. The protective MBR entry takes its
//!   size (1 sector); `primary_gpt` takes `ceil(size / ss)` sectors and must
//!   hold a header sector and 128 entries (16896 bytes; 20480 at 4096); the
//!   first usable LBA is where it ends. A t210 `GP1` always takes LBA 0–33
//!   whatever its size says (NVIDIA's t210 tools ignore it; meta-tegra
//!   6a763297).
//! * A partition takes `id` as its number, else the previous number + 1
//!   (the first gets 1); numbers are 1..=128 and unique.
//! * It starts at `ceil(start_location / ss)` when given (never behind `cur`;
//!   `align_boundary` is not applied on top), else at `cur` rounded up to
//!   `align_boundary` bytes.
//! * It ends at N − 34 (N − 6 at 4096: one sector before the backup entry
//!   array) when `allocation_attribute` is exactly 0x808 (C `strtoul`
//!   semantics: `0x808`, `0X808`, `2056`, `04010`), else after
//!   `ceil(size / ss)` sectors. N is the real disk size.
//! * `secondary_gpt` / `GPT` is the backup table in the last 33 sectors.
//! * A name longer than the 36 UTF-16 units a GPT entry holds is cut to 36,
//!   as NVIDIA's tools and sgdisk do, with a note; a `unique_guid` that is
//!   not a GUID (`_b`, what meta-tegra and flash.sh leave of `APPUUID_b`)
//!   gets a random GUID when the table is written, with a note (NVIDIA
//!   writes a junk one).
//!
//! Where NVIDIA silently makes something useless (zero-length entries from
//! an empty size or a second fill partition, a partition that overflows the
//! disk or the sector count), we refuse instead: the board would not work
//! with it anyway.
//!
//! Boot devices (`sdmmc_boot`, `spi`, the first t210 `sdmmc`) follow
//! meta-tegra's boot-partition rules, which reproduce NVIDIA's offsets: `cur`
//! is first rounded up to `align_boundary`, then `start_location` (if any,
//! never behind it) wins; ids are ignored; the backup pseudo-GPT sits in the
//! last 33 sectors.

#![deny(clippy::indexing_slicing)]

use super::xml::{DeviceSpec, FlashLayout, PartitionSpec};
use super::{
    gpt_sectors, max_disk_sectors, min_primary_gpt_bytes, BootArea, BootDeviceKind, BootPartition,
    LayoutError, Partition, PartitionTable, GPT_ENTRIES, GPT_SECTORS, MAX_NAME_UTF16, NIL_GUID,
    SECTOR_SIZE, SECTOR_SIZES,
};
use crate::guid::{Guid, BASIC_DATA};

/// `allocation_attribute` value that makes a partition fill the disk.
pub const FILL_ATTRIBUTE: u64 = 0x808;
/// The disk tail a fill partition leaves free at 512 bytes a sector: backup
/// entries (32) + header (1) + 1; [`tail_sectors`] for any sector size.
pub const TAIL_SECTORS: u64 = GPT_SECTORS + 1;

/// The disk tail a fill partition leaves free: the backup GPT and the sector
/// before it (34 at 512 bytes a sector, 6 at 4096).
pub fn tail_sectors(sector_size: u64) -> u64 {
    gpt_sectors(sector_size) + 1
}

/// What a `<partition>` is, by its `type` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// `protective_master_boot_record`.
    Mbr,
    /// `primary_gpt`, or t210 `GP1`.
    PrimaryGpt {
        /// True for t210 `GP1` (fixed 34 sectors).
        t210: bool,
    },
    /// `secondary_gpt`, or t210 `GPT`.
    SecondaryGpt,
    /// Everything else: a real partition.
    Data,
}

/// Classifies a partition spec.
pub fn role(p: &PartitionSpec) -> PartitionKind {
    match p.attr("type").unwrap_or("") {
        "protective_master_boot_record" => PartitionKind::Mbr,
        "primary_gpt" => PartitionKind::PrimaryGpt { t210: false },
        "GP1" => PartitionKind::PrimaryGpt { t210: true },
        "secondary_gpt" | "GPT" => PartitionKind::SecondaryGpt,
        _ => PartitionKind::Data,
    }
}

/// Parses a number the way C `strtoul(s, NULL, 0)` does for a whole field:
/// `0x`/`0X` hexadecimal, a leading `0` octal, else decimal. Unlike strtoul,
/// trailing garbage is an error, not ignored.
pub fn parse_c_number(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(s.get(1..)?, 8).ok()
    } else {
        s.parse().ok()
    }
}

/// The file being placed, for error messages.
pub struct LayoutFile<'a> {
    /// File name as shown in errors.
    pub file: &'a str,
}

impl LayoutFile<'_> {
    /// An error at `line`, about `partition`, breaking `rule`.
    pub fn err(&self, line: u32, partition: Option<&str>, rule: impl Into<String>) -> LayoutError {
        LayoutError {
            file: self.file.to_owned(),
            line: Some(line),
            partition: partition.map(str::to_owned),
            rule: rule.into(),
        }
    }

    /// A numeric field (`size`, `start_location`, ...) as bytes.
    fn number(&self, p: &PartitionSpec, field: &str) -> Result<Option<u64>, LayoutError> {
        match p.field(field) {
            // NVIDIA reads an empty element like a missing one.
            None | Some("") => Ok(None),
            Some(text) => parse_c_number(text).map(Some).ok_or_else(|| {
                self.err(
                    p.line,
                    Some(p.name()),
                    format!("<{field}> '{text}' is not a number"),
                )
            }),
        }
    }
}

fn sectors(bytes: u64, sector_size: u64) -> u64 {
    bytes.div_ceil(sector_size)
}

/// The device's `sector_size` attribute: 512 when absent, else 512 or
/// 4096 (the sector sizes NVIDIA's tools place; flash-layout.md §2.7).
pub fn sector_size(ctx: &LayoutFile<'_>, dev: &DeviceSpec) -> Result<u64, LayoutError> {
    let Some(text) = dev.attr("sector_size") else {
        return Ok(SECTOR_SIZE);
    };
    match parse_c_number(text) {
        Some(ss) if SECTOR_SIZES.contains(&ss) => Ok(ss),
        _ => Err(ctx.err(
            dev.line,
            None,
            format!(
                "sector_size '{text}' of the {} device is not 512 or 4096",
                dev.kind
            ),
        )),
    }
}

/// `name` cut to its first `units` UTF-16 code units (never in the middle
/// of a surrogate pair).
pub fn cut_utf16(name: &str, units: usize) -> String {
    let mut used = 0;
    name.chars()
        .take_while(|c| {
            used += c.len_utf16();
            used <= units
        })
        .collect()
}

/// A partition's name: non-empty and free of NUL; one longer than the 36
/// UTF-16 units a GPT entry holds is cut to 36 as NVIDIA's tools and sgdisk
/// do (the board then knows the partition by the cut name), with a note.
fn check_name(
    ctx: &LayoutFile<'_>,
    p: &PartitionSpec,
    notes: &mut Vec<String>,
) -> Result<String, LayoutError> {
    let name = p.name();
    if name.is_empty() {
        return Err(ctx.err(p.line, None, "partition has no name"));
    }
    if name.contains('\0') {
        return Err(ctx.err(p.line, Some(name), "name contains a NUL character"));
    }
    let units = name.encode_utf16().count();
    if units > MAX_NAME_UTF16 {
        let cut = cut_utf16(name, MAX_NAME_UTF16);
        notes.push(format!(
            "line {}: partition '{name}': the name is {units} UTF-16 units long; cut to '{cut}', the {MAX_NAME_UTF16} a GPT entry holds, as NVIDIA's tools do",
            p.line
        ));
        return Ok(cut);
    }
    Ok(name.to_owned())
}

/// Whether `allocation_attribute` asks for "fill the rest of the disk".
fn is_fill(ctx: &LayoutFile<'_>, p: &PartitionSpec) -> Result<bool, LayoutError> {
    Ok(ctx.number(p, "allocation_attribute")? == Some(FILL_ATTRIBUTE))
}

/// Rounds `sector` up to a multiple of `align` bytes (a multiple of the
/// sector size).
fn align_up(
    ctx: &LayoutFile<'_>,
    p: &PartitionSpec,
    sector: u64,
    align: u64,
    sector_size: u64,
) -> Result<u64, LayoutError> {
    if align == 0 {
        return Ok(sector);
    }
    if align % sector_size != 0 {
        return Err(ctx.err(
            p.line,
            Some(p.name()),
            format!("<align_boundary> {align} is not a multiple of {sector_size} bytes"),
        ));
    }
    let per = align / sector_size;
    sector
        .div_ceil(per)
        .checked_mul(per)
        .ok_or_else(|| ctx.err(p.line, Some(p.name()), "aligned start overflows"))
}

/// The rule broken by a disk (or boot device) larger than 2^63 bytes
/// ([`max_disk_sectors`] sectors of `sector_size` bytes).
pub fn too_big(sectors: u64, sector_size: u64) -> String {
    format!(
        "a device of {sectors} sectors is larger than 2^63 bytes ({} sectors)",
        max_disk_sectors(sector_size)
    )
}

/// The sector `start_location` puts a partition at (rounded up; alignment is
/// not applied on top), refusing one behind the current position `cur`.
fn start_location(
    ctx: &LayoutFile<'_>,
    p: &PartitionSpec,
    cur: u64,
    sector_size: u64,
) -> Result<Option<u64>, LayoutError> {
    let Some(bytes) = ctx.number(p, "start_location")? else {
        return Ok(None);
    };
    let s = sectors(bytes, sector_size);
    if s < cur {
        return Err(ctx.err(
            p.line,
            Some(p.name()),
            format!("start_location {bytes:#x} (sector {s}) is behind the current position (sector {cur})"),
        ));
    }
    Ok(Some(s))
}

/// Places the user-area device on a disk of `disk_sectors` sectors of
/// `sector_size` bytes.
pub fn user_table(
    ctx: &LayoutFile<'_>,
    dev: &DeviceSpec,
    disk_sectors: u64,
    sector_size: u64,
) -> Result<(PartitionTable, Vec<String>), LayoutError> {
    let n = disk_sectors;
    let ss = sector_size;
    let sectors = |bytes: u64| sectors(bytes, ss);
    let mut notes = Vec::new();
    let mut cur: u64 = 0;
    let mut first_usable: Option<u64> = None;
    let mut next_id: u64 = 1;
    let mut fill_seen: Option<String> = None;
    let mut secondary_seen = false;
    let mut parts: Vec<Partition> = Vec::new();
    let min_disk = 2 * gpt_sectors(ss) + 2;
    if n < min_disk {
        return Err(ctx.err(
            dev.line,
            None,
            format!("a disk of {n} sectors cannot hold two GPTs and a partition"),
        ));
    }
    if n > max_disk_sectors(ss) {
        return Err(ctx.err(dev.line, None, too_big(n, ss)));
    }
    let last_usable = n - tail_sectors(ss);

    for p in &dev.partitions {
        match role(p) {
            PartitionKind::Mbr => {
                let size = ctx.number(p, "size")?.unwrap_or(ss);
                cur = cur
                    .checked_add(sectors(size))
                    .ok_or_else(|| ctx.err(p.line, Some(p.name()), "size overflows"))?;
            }
            PartitionKind::PrimaryGpt { t210 } => {
                if first_usable.is_some() {
                    return Err(ctx.err(p.line, Some(p.name()), "a second primary GPT"));
                }
                if t210 {
                    // The MBR and a standard primary GPT (34 sectors at 512).
                    cur = 1 + gpt_sectors(ss);
                } else {
                    let size = ctx.number(p, "size")?.unwrap_or(0);
                    let min = min_primary_gpt_bytes(ss);
                    if size < min {
                        return Err(ctx.err(
                            p.line,
                            Some(p.name()),
                            format!(
                                "primary GPT size {size} bytes is smaller than {min} ({} sectors of {ss} bytes: header + 128 entries)",
                                gpt_sectors(ss)
                            ),
                        ));
                    }
                    // The header is at LBA 1 whether or not the layout lists the MBR.
                    cur = cur.max(1).checked_add(sectors(size)).ok_or_else(|| {
                        ctx.err(p.line, Some(p.name()), "primary GPT size overflows")
                    })?;
                }
                first_usable = Some(cur);
            }
            PartitionKind::SecondaryGpt => secondary_seen = true,
            PartitionKind::Data => {
                let name = check_name(ctx, p, &mut notes)?;
                let err = |rule: String| ctx.err(p.line, Some(&name), rule);
                if secondary_seen {
                    return Err(err("placed after the secondary GPT".into()));
                }
                let Some(first) = first_usable else {
                    return Err(err("comes before the primary_gpt entry".into()));
                };
                let number = match p.attr("id") {
                    Some(text) => parse_c_number(text)
                        .ok_or_else(|| err(format!("id '{text}' is not a number")))?,
                    None => next_id,
                };
                if !(1..=u64::from(GPT_ENTRIES)).contains(&number) {
                    return Err(err(format!(
                        "id {number} is out of range [1, {GPT_ENTRIES}]"
                    )));
                }
                let number = number as u32;
                if let Some(other) = parts.iter().find(|q| q.number == number) {
                    return Err(err(format!(
                        "id {number} is already used by '{}'",
                        other.name
                    )));
                }
                if let Some(other) = parts.iter().find(|q| q.name == name) {
                    return Err(err(format!(
                        "name is already used by partition {}",
                        other.number
                    )));
                }
                next_id = u64::from(number) + 1;

                let fill = is_fill(ctx, p)?;
                if let Some(f) = &fill_seen {
                    return Err(err(format!(
                        "comes after '{f}', which fills the rest of the disk"
                    )));
                }
                let start = match start_location(ctx, p, cur, ss)? {
                    Some(s) => s,
                    None => align_up(
                        ctx,
                        p,
                        cur,
                        ctx.number(p, "align_boundary")?.unwrap_or(0),
                        ss,
                    )?,
                };
                if start < first {
                    return Err(err(format!(
                        "starts at sector {start}, inside the primary GPT (first usable sector {first})"
                    )));
                }
                let last = if fill {
                    fill_seen = Some(name.clone());
                    if start > last_usable {
                        return Err(err(format!(
                            "fill partition starts at sector {start}, past the last usable sector {last_usable}"
                        )));
                    }
                    last_usable
                } else {
                    let size = ctx.number(p, "size")?.unwrap_or(0);
                    let len = sectors(size);
                    if len == 0 {
                        return Err(err("has a size of zero (empty or missing <size>)".into()));
                    }
                    start
                        .checked_add(len - 1)
                        .filter(|e| *e <= last_usable)
                        .ok_or_else(|| {
                            err(format!(
                                "ends at sector {}, past the last usable sector {last_usable} of a {n}-sector disk",
                                start.saturating_add(len - 1)
                            ))
                        })?
                };
                let type_guid = match p.field("partition_type_guid").filter(|t| !t.is_empty()) {
                    Some(t) => Guid::parse(t)
                        .map_err(|_| err(format!("partition_type_guid '{t}' is not a GUID")))?,
                    None => BASIC_DATA,
                };
                if type_guid.is_nil() {
                    return Err(err(format!("partition_type_guid {}", NIL_GUID)));
                }
                let unique_guid = match p.field("unique_guid").filter(|t| !t.is_empty()) {
                    Some(t) => match Guid::parse(t) {
                        Err(_) => {
                            notes.push(format!(
                                "partition '{name}': unique_guid '{t}' is not a GUID; a random one will be generated (NVIDIA's tools write a junk one)"
                            ));
                            None
                        }
                        Ok(g) if g.is_nil() => {
                            return Err(err(format!("unique_guid {}", NIL_GUID)));
                        }
                        Ok(g) => {
                            if let Some(other) = parts.iter().find(|q| q.unique_guid == Some(g)) {
                                notes.push(format!(
                                    "partition '{name}': unique GUID {g} is already used by '{}'; a new one will be generated",
                                    other.name
                                ));
                                None
                            } else {
                                Some(g)
                            }
                        }
                    },
                    None => None,
                };
                parts.push(Partition {
                    number,
                    name,
                    first_lba: start,
                    last_lba: last,
                    type_guid,
                    unique_guid,
                    fills_disk: fill,
                });
                cur = last + 1;
            }
        }
    }
    let Some(first_usable_lba) = first_usable else {
        return Err(ctx.err(
            dev.line,
            None,
            "the user-area device has no primary_gpt entry",
        ));
    };
    if parts.is_empty() {
        return Err(ctx.err(dev.line, None, "the user-area device has no partitions"));
    }
    parts.sort_by_key(|p| p.number);
    Ok((
        PartitionTable {
            sector_size: ss,
            disk_sectors: n,
            first_usable_lba,
            last_usable_lba: last_usable,
            partitions: parts,
        },
        notes,
    ))
}

/// Places a boot device's partitions; remarks (a name cut to 36 units) go
/// to `notes`.
pub fn boot_area(
    ctx: &LayoutFile<'_>,
    dev: &DeviceSpec,
    kind: BootDeviceKind,
    notes: &mut Vec<String>,
) -> Result<BootArea, LayoutError> {
    // NVIDIA's boot-device pseudo-GPT and the tools that read it (REF,
    // edk2-nvidia's QSPI GPT) count 512-byte sectors whatever the medium.
    let ss = sector_size(ctx, dev)?;
    if ss != SECTOR_SIZE {
        return Err(ctx.err(
            dev.line,
            None,
            format!("sector_size {ss} of the {} boot device: boot devices have 512-byte sectors (their partition table counts 512-byte sectors)", dev.kind),
        ));
    }
    let sectors = |bytes: u64| sectors(bytes, SECTOR_SIZE);
    let num_sectors = match dev.attr("num_sectors") {
        Some(t) => Some(parse_c_number(t).ok_or_else(|| {
            ctx.err(
                dev.line,
                None,
                format!("num_sectors '{t}' of the boot device is not a number"),
            )
        })?),
        None => None,
    };
    let mut cur: u64 = 0;
    let mut out: Vec<BootPartition> = Vec::new();
    for p in &dev.partitions {
        if role(p) != PartitionKind::Data {
            continue;
        }
        let name = check_name(ctx, p, notes)?;
        let err = |rule: String| ctx.err(p.line, Some(&name), rule);
        if out.iter().any(|q| q.name == name) {
            return Err(err("name is used twice on the boot device".into()));
        }
        if is_fill(ctx, p)? {
            return Err(err(
                "a fill (0x808) partition on a boot device is not supported".into(),
            ));
        }
        cur = align_up(
            ctx,
            p,
            cur,
            ctx.number(p, "align_boundary")?.unwrap_or(0),
            SECTOR_SIZE,
        )?;
        let start = start_location(ctx, p, cur, SECTOR_SIZE)?.unwrap_or(cur);
        let len = sectors(ctx.number(p, "size")?.unwrap_or(0));
        if len == 0 {
            return Err(err("has a size of zero (empty or missing <size>)".into()));
        }
        // Bounded like a disk, so `start` and `len` in bytes fit a u64.
        let end = start
            .checked_add(len)
            .filter(|e| *e <= max_disk_sectors(SECTOR_SIZE))
            .ok_or_else(|| {
                err(format!(
                    "ends past 2^63 bytes (start_location/size {:#x}/{:#x} sectors)",
                    start, len
                ))
            })?;
        if let Some(n) = num_sectors {
            let limit = n.saturating_sub(GPT_SECTORS);
            if end > limit {
                return Err(err(format!(
                    "ends at sector {}, past sector {} where the boot device's GPT begins",
                    end - 1,
                    limit
                )));
            }
        }
        out.push(BootPartition {
            name,
            offset: start * SECTOR_SIZE,
            size: len * SECTOR_SIZE,
        });
        cur = end;
    }
    Ok(BootArea {
        kind,
        num_sectors,
        partitions: out,
    })
}

/// The user-area device of a layout: `sdmmc_user`, else the second `sdmmc`
/// (t210), else `sdcard`, else `nvme` or `external` (Orin NX/Nano layouts
/// for NVMe or USB disks).
pub fn user_device(layout: &FlashLayout) -> Option<&DeviceSpec> {
    let by_kind = |k: &str| layout.devices.iter().find(|d| d.kind == k);
    by_kind("sdmmc_user")
        .or_else(|| layout.devices.iter().filter(|d| d.kind == "sdmmc").nth(1))
        .or_else(|| by_kind("sdcard"))
        .or_else(|| by_kind("nvme"))
        .or_else(|| by_kind("external"))
}

/// The boot device of a layout: `sdmmc_boot`, else `spi`, else the first
/// `sdmmc` (t210).
pub fn boot_device(layout: &FlashLayout) -> Option<(&DeviceSpec, BootDeviceKind)> {
    let by_kind = |k: &str| layout.devices.iter().find(|d| d.kind == k);
    by_kind("sdmmc_boot")
        .map(|d| (d, BootDeviceKind::SdmmcBoot))
        .or_else(|| by_kind("spi").map(|d| (d, BootDeviceKind::Spi)))
        .or_else(|| by_kind("sdmmc").map(|d| (d, BootDeviceKind::T210Sdmmc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit (issue 8): a boot partition of size 0xFFFF_FFFF_FFFF_FFFF on a
    /// boot device without num_sectors overflowed `len × 512` (a panic with
    /// overflow checks, a size of 0 without).
    #[test]
    fn boot_partition_past_2_63_bytes_is_refused() {
        let ctx = LayoutFile { file: "b.xml" };
        for body in [
            "<size>0xFFFFFFFFFFFFFFFF</size>",
            "<size>512</size><start_location>0xFFFFFFFFFFFFFFFF</start_location>",
        ] {
            let text = format!("<partition_layout><device type='sdmmc_boot'><partition name='mb1' type='mb1_bootloader'>{body}</partition></device></partition_layout>");
            let layout = super::super::xml::parse(&text).unwrap();
            let e = boot_area(
                &ctx,
                layout.devices.first().unwrap(),
                BootDeviceKind::SdmmcBoot,
                &mut Vec::new(),
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains("partition 'mb1': ends past 2^63 bytes"),
                "{e}"
            );
        }
    }

    #[test]
    fn c_numbers_follow_strtoul_base_0() {
        assert_eq!(parse_c_number("0x808"), Some(0x808));
        assert_eq!(parse_c_number("0X808"), Some(0x808));
        assert_eq!(parse_c_number("2056"), Some(0x808));
        assert_eq!(parse_c_number("04010"), Some(0x808));
        assert_eq!(parse_c_number("808"), Some(808));
        assert_eq!(parse_c_number(" 512 "), Some(512));
        assert_eq!(parse_c_number("0"), Some(0));
        assert_eq!(parse_c_number("0xFFFFFFFFFFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_c_number("-1"), None);
        assert_eq!(parse_c_number("APPSIZE"), None);
        assert_eq!(parse_c_number("12abc"), None);
        assert_eq!(parse_c_number("0x1_0"), None);
        assert_eq!(parse_c_number(""), None);
        assert_eq!(parse_c_number("099"), None);
    }
}
