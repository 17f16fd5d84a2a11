//! Bootloader update payloads (BUP): reading them, choosing the entries for
//! this board, and writing the boot partitions in a safe order.
//!
//! This is our own implementation of OE4T's `tegra-bootloader-update`
//! ("REF"; the format and its behaviour are in docs/spec/bup-format.md, the
//! vocabulary in docs/spec/README.md), keeping its behaviour where it is right
//! and doing what the spec recommends ("REC") where REF is undefined or
//! unsafe. Every deliberate deviation is named in a comment or a test, and
//! listed in docs/spec/bup-format.md §5.1. Bare `§N` references in this
//! module's comments are sections of docs/spec/bup-format.md.
//!
//! ```text
//!  payload ──payload──▶ header + entries
//!  board   ──board────▶ TNSPEC ──tnspec──▶ selected entries (one per partition)
//!  devices ──device───▶ boot table (layout / bootgpt), user partitions, survey
//!                      └──plan──▶ WritePlan: every write, in order, validated
//!                                 └──exec──▶ compare, write, fsync, read back
//! ```
//!
//! All modules but [`exec`], [`device`] and [`update`] are pure: bytes and
//! text in, values out. [`update`] is the glue that opens devices through
//! [`crate::sys`]; the `bup` commands and the installer both use it.

pub mod bct;
pub mod board;
pub mod boot_plan;
pub mod bootgpt;
pub mod bootinfo;
pub mod check;
pub mod device;
pub mod exec;
pub mod payload;
pub mod smd;
pub mod t234;
pub mod t234_check;
pub mod tnspec;
pub mod update;
pub mod ver;

/// The boot partition tables of the tests, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod fixtures {
    use crate::layout::BootPartition;
    include!("test_tables.rs");
}

use crate::layout::BootDeviceKind;
use serde::Serialize;

/// What the boot partitions are stored on; it decides the BCT geometry, the
/// names of T210 backup partitions and how many devices make up the boot
/// area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMedium {
    /// eMMC boot0 followed by boot1, used as one linear device.
    Emmc,
    /// QSPI NOR flash, through `/dev/mtdblock0`.
    Spi,
}

impl BootMedium {
    /// The medium of a layout's boot device.
    pub fn of(kind: BootDeviceKind) -> BootMedium {
        match kind {
            BootDeviceKind::SdmmcBoot | BootDeviceKind::T210Sdmmc => BootMedium::Emmc,
            BootDeviceKind::Spi => BootMedium::Spi,
        }
    }
}

impl std::fmt::Display for BootMedium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BootMedium::Emmc => "eMMC boot0 + boot1",
            BootMedium::Spi => "SPI flash",
        })
    }
}
