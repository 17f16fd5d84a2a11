//! Printing a partition table: `table` (like `sgdisk --print`), `csv`
//! (tegra-sysinstall's `partition_table`) and `json` (a stable interface).

use super::{BootArea, PartitionTable};
use crate::guid::Guid;
use serde::Serialize;

/// sgdisk's four-digit code for a type GUID, or the GUID itself.
pub fn type_code(g: &Guid) -> String {
    g.sgdisk_code().map_or_else(|| g.to_string(), str::to_owned)
}

/// A size as sgdisk prints it: divide by 1024 while above 1024, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v > 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).copied().unwrap_or("?"))
    }
}

/// Sectors in `[first_usable, last_usable]` not covered by any partition.
pub fn free_sectors(t: &PartitionTable) -> u64 {
    let span = (t.last_usable_lba + 1).saturating_sub(t.first_usable_lba);
    let used: u64 = t
        .partitions
        .iter()
        .map(|p| {
            let a = p.first_lba.max(t.first_usable_lba);
            let b = p.last_lba.min(t.last_usable_lba);
            (b + 1).saturating_sub(a)
        })
        .sum();
    span.saturating_sub(used)
}

/// The human table.
pub fn table(t: &PartitionTable, source: &str) -> String {
    let free = free_sectors(t);
    let mut s = format!(
        "Layout: {source}\nDisk: {} sectors, {}\nSector size (logical): {} bytes\nPartition table holds up to 128 entries\nFirst usable sector is {}, last usable sector is {}\nTotal free space is {free} sectors ({})\n\nNumber  Start (sector)    End (sector)  Size        Code  Name\n",
        t.disk_sectors,
        human_size(t.disk_sectors * t.sector_size),
        t.sector_size,
        t.first_usable_lba,
        t.last_usable_lba,
        human_size(free * t.sector_size),
    );
    for p in &t.partitions {
        let code = match p.type_guid.sgdisk_code() {
            Some(c) => c.to_owned(),
            None => "----".to_owned(),
        };
        s.push_str(&format!(
            "{:>4}  {:>14}  {:>14}   {:<10}  {:<4}  {}{}\n",
            p.number,
            p.first_lba,
            p.last_lba,
            human_size(p.size_bytes(t.sector_size)),
            code,
            p.name,
            if p.type_guid.sgdisk_code().is_none() {
                format!(" (type {})", p.type_guid)
            } else {
                String::new()
            }
        ));
    }
    s
}

#[derive(Serialize)]
struct JsonTable<'a> {
    sector_size: u64,
    disk_sectors: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    partitions: Vec<JsonPartition<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_device: Option<&'a BootArea>,
}

#[derive(Serialize)]
struct JsonPartition<'a> {
    number: u32,
    name: &'a str,
    start_lba: u64,
    end_lba: u64,
    size_sectors: u64,
    type_guid: Guid,
    unique_guid: Option<Guid>,
    fills_disk: bool,
}

/// The JSON document: `{"sector_size":512,"disk_sectors":N,"first_usable_lba":..,
/// "last_usable_lba":..,"partitions":[{"number":..,"name":"..","start_lba":..,
/// "end_lba":..,"type_guid":"..","unique_guid":"..|null",...}]}`, partitions in
/// GPT-number order, GUIDs upper-case, then the boot device's partitions
/// (`"boot_device":{"kind":..,"num_sectors":..,"partitions":[{"name","offset","size"}]}`,
/// bytes) when the layout has one. Fields may be added, never changed.
pub fn json(t: &PartitionTable, boot: Option<&BootArea>) -> String {
    let doc = JsonTable {
        boot_device: boot,
        sector_size: t.sector_size,
        disk_sectors: t.disk_sectors,
        first_usable_lba: t.first_usable_lba,
        last_usable_lba: t.last_usable_lba,
        partitions: t
            .partitions
            .iter()
            .map(|p| JsonPartition {
                number: p.number,
                name: &p.name,
                start_lba: p.first_lba,
                end_lba: p.last_lba,
                size_sectors: p.sectors(),
                type_guid: p.type_guid,
                unique_guid: p.unique_guid,
                fills_disk: p.fills_disk,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// The boot device's partitions in tegra-boot-tools' `boot-partitions.conf`
/// format: `name:offset:length`, bytes from the start of the boot device.
pub fn boot_conf(b: &BootArea) -> String {
    b.partitions
        .iter()
        .map(|p| format!("{}:{}:{}\n", p.name, p.offset, p.size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_sgdisk() {
        assert_eq!(human_size(6442450944), "6.0 GiB");
        assert_eq!(human_size(1048576), "1024.0 KiB");
        assert_eq!(human_size(618496), "604.0 KiB");
        assert_eq!(human_size(3584), "3.5 KiB");
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(17431301632), "16.2 GiB");
    }
}
