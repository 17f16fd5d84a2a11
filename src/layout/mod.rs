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
//!    (docs: flash-layout.md §2) into a [`PartitionTable`] for the user area
//!    and a [`BootArea`] for the boot device.
//! 4. [`render`] prints a table as `table`, `csv` or `json`.
//!
//! [`csv`] reads and writes the legacy `partition_table` format, and also
//! produces a [`PartitionTable`].
//!
//! Nothing here touches a device: the disk size is an input.

pub mod csv;
pub mod geometry;
pub mod render;
pub mod subst;
pub mod xml;

use crate::guid::Guid;
use serde::Serialize;

/// Logical sector size of every device the layouts describe.
pub const SECTOR_SIZE: u64 = 512;
/// Entries in every GPT we write (NVIDIA and sgdisk both use 128).
pub const GPT_ENTRIES: u32 = 128;
/// Size of one GPT entry in bytes.
pub const GPT_ENTRY_SIZE: u32 = 128;
/// Sectors taken by a GPT header plus its 128-entry array (1 + 32).
pub const GPT_SECTORS: u64 = 33;
/// Bytes a primary GPT must at least have: header sector + 128 × 128-byte entries.
pub const MIN_PRIMARY_GPT_BYTES: u64 = 512 + 128 * 128;
/// Longest GPT partition name, in UTF-16 code units.
pub const MAX_NAME_UTF16: usize = 36;

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
    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba + 1 - self.first_lba
    }

    /// Length in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors() * SECTOR_SIZE
    }
}

/// A complete user-area partition table for a disk of a known size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// Always 512.
    pub sector_size: u64,
    /// Size of the disk in sectors (`N`).
    pub disk_sectors: u64,
    /// First sector a partition may use: 1 + the sectors of the layout's
    /// `primary_gpt` (34, 40, 4097, ...), as NVIDIA's header says.
    pub first_usable_lba: u64,
    /// Last sector a partition may use: `N − 34`, the UEFI-correct value (the
    /// backup entry array starts at `N − 33`). NVIDIA's header says `N − 33`;
    /// see `gpt` for why we write the correct one.
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
    /// Size of the target disk in sectors; `None` means the XML's
    /// `num_sectors` (an error for a CSV, which has none).
    pub disk_sectors: Option<u64>,
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
    parse(&text, &file, opts)
}

/// Places a layout given as text; `file` names it in errors.
pub fn parse(text: &str, file: &str, opts: &LoadOptions) -> Result<Layout, LayoutError> {
    let _ = (text, opts);
    Err(LayoutError {
        file: file.to_owned(),
        line: None,
        partition: None,
        rule: "layout parsing is not implemented yet".into(),
    })
}
