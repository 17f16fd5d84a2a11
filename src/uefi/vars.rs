//! The UEFI variables a T234 install reads and writes: their names and
//! GUIDs, and their encodings (docs: t234-boot-chain.md §3.1, §3.4). Pure.
//!
//! An efivarfs file holds the 4-byte little-endian attributes followed by
//! the data. Every variable we write is NV|BS|RT (`07 00 00 00`); the u32
//! ones carry a little-endian `u32`, `OsIndications` a `u64` (12 bytes in
//! all), the platform specs ASCII without a terminator (as meta-tegra and
//! jetpack-nixos write them; UEFI adds the NUL when it reads them).
//!
//! [`VarStore`] is what the planner's operations are applied to:
//! [`crate::sys::efivarfs`] implements it over an efivarfs directory; the
//! tests implement it in memory.

#![deny(clippy::indexing_slicing)]

use crate::bup::board::Slot;
use crate::guid::Guid;
use serde::Serialize;
use std::fmt;

/// `gNVIDIAPublicVariableGuid`: the boot-chain, rootfs and platform-spec
/// variables.
pub const NVIDIA_PUBLIC_GUID: Guid = Guid::from_fields(
    0x781E_084C,
    0xA330,
    0x417C,
    [0xB6, 0x78, 0x38, 0xE6, 0x96, 0x38, 0x0C, 0xB9],
);
/// `EFI_GLOBAL_VARIABLE`: `OsIndications` and the other UEFI-defined ones.
pub const GLOBAL_GUID: Guid = Guid::from_fields(
    0x8BE4_DF61,
    0x93CA,
    0x11D2,
    [0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C],
);
/// The FMP image type of Jetson system firmware on R35 and R36
/// (`l4t_generate_soc_capsule.sh`; meta-tegra). R38 and later use one per
/// configuration, which the running firmware reports as the ESRT `fw_class`.
pub const TEGRA_FMP_IMAGE_TYPE: Guid = Guid::from_fields(
    0xBF0D_4599,
    0x20D4,
    0x414E,
    [0xB2, 0xC5, 0x35, 0x95, 0xB1, 0xCD, 0xA4, 0x02],
);

/// `EFI_VARIABLE_NON_VOLATILE`.
pub const ATTR_NON_VOLATILE: u32 = 0x1;
/// `EFI_VARIABLE_BOOTSERVICE_ACCESS`.
pub const ATTR_BOOTSERVICE_ACCESS: u32 = 0x2;
/// `EFI_VARIABLE_RUNTIME_ACCESS`.
pub const ATTR_RUNTIME_ACCESS: u32 = 0x4;
/// NV|BS|RT, the attributes of every variable we write.
pub const ATTR_NV_BS_RT: u32 = ATTR_NON_VOLATILE | ATTR_BOOTSERVICE_ACCESS | ATTR_RUNTIME_ACCESS;
/// `EFI_OS_INDICATIONS_FILE_CAPSULE_DELIVERY_SUPPORTED`: process the capsules
/// in `\EFI\UpdateCapsule` at the next boot.
pub const OS_INDICATIONS_FILE_CAPSULE_DELIVERY: u64 = 1 << 2;
/// `RootfsStatusSlot*` value of a bootable slot (L4TRootfsValidation).
pub const ROOTFS_STATUS_NORMAL: u32 = 0x0;
/// `RootfsStatusSlot*` value of a slot L4TLauncher gave up on.
pub const ROOTFS_STATUS_UNBOOTABLE: u32 = 0xFF;
/// Longest variable data we read (the platform specs are under 128 bytes;
/// every other one is a few bytes).
pub const MAX_DATA: usize = 4096;
/// The attribute word at the start of an efivarfs file.
pub const ATTR_LEN: usize = 4;

/// The variables this tool knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Var {
    /// Chain UEFI booted (0 A, 1 B); volatile, set by UEFI.
    BootChainFwCurrent,
    /// Chain switch requested for the next boot.
    BootChainFwNext,
    /// Outcome of the last chain switch; its presence cancels capsules.
    BootChainFwStatus,
    /// Rootfs slot L4TLauncher chose; volatile.
    BootChainOsCurrent,
    /// 0 normal, 0xFF unbootable.
    RootfsStatusSlotA,
    /// 0 normal, 0xFF unbootable.
    RootfsStatusSlotB,
    /// 0 or 1; locked, from the firmware's device tree.
    RootfsRedundancyLevel,
    /// The board's full TNSPEC; lock-on-create.
    TegraPlatformSpec,
    /// The board's compatible spec.
    TegraPlatformCompatSpec,
    /// Firmware version of chain A and chain B (`u32[2]`).
    SystemFwVersions,
    /// 0 grub, 1 direct, 2 boot.img, 3 recovery.
    L4TDefaultBootMode,
    /// Requests to the firmware for the next boot (`u64`).
    OsIndications,
    /// What the firmware accepts in `OsIndications`.
    OsIndicationsSupported,
}

impl Var {
    /// Every known variable, in the order `status` lists them.
    pub const ALL: [Var; 13] = [
        Var::BootChainFwCurrent,
        Var::BootChainFwNext,
        Var::BootChainFwStatus,
        Var::BootChainOsCurrent,
        Var::RootfsStatusSlotA,
        Var::RootfsStatusSlotB,
        Var::RootfsRedundancyLevel,
        Var::TegraPlatformSpec,
        Var::TegraPlatformCompatSpec,
        Var::SystemFwVersions,
        Var::L4TDefaultBootMode,
        Var::OsIndications,
        Var::OsIndicationsSupported,
    ];

    /// The UEFI variable name.
    pub fn name(self) -> &'static str {
        match self {
            Var::BootChainFwCurrent => "BootChainFwCurrent",
            Var::BootChainFwNext => "BootChainFwNext",
            Var::BootChainFwStatus => "BootChainFwStatus",
            Var::BootChainOsCurrent => "BootChainOsCurrent",
            Var::RootfsStatusSlotA => "RootfsStatusSlotA",
            Var::RootfsStatusSlotB => "RootfsStatusSlotB",
            Var::RootfsRedundancyLevel => "RootfsRedundancyLevel",
            Var::TegraPlatformSpec => "TegraPlatformSpec",
            Var::TegraPlatformCompatSpec => "TegraPlatformCompatSpec",
            Var::SystemFwVersions => "SystemFwVersions",
            Var::L4TDefaultBootMode => "L4TDefaultBootMode",
            Var::OsIndications => "OsIndications",
            Var::OsIndicationsSupported => "OsIndicationsSupported",
        }
    }

    /// The vendor GUID.
    pub fn guid(self) -> Guid {
        match self {
            Var::OsIndications | Var::OsIndicationsSupported => GLOBAL_GUID,
            _ => NVIDIA_PUBLIC_GUID,
        }
    }

    /// The efivarfs file name, `Name-guid` (lower-case GUID, as the kernel
    /// names them).
    pub fn file_name(self) -> String {
        format!(
            "{}-{}",
            self.name(),
            self.guid().to_string().to_ascii_lowercase()
        )
    }

    /// `RootfsStatusSlotA`/`B` of a slot.
    pub fn rootfs_status(slot: Slot) -> Var {
        match slot {
            Slot::A => Var::RootfsStatusSlotA,
            Slot::B => Var::RootfsStatusSlotB,
        }
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A variable's attributes and data: the contents of its efivarfs file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarValue {
    /// `EFI_VARIABLE_*` attribute bits.
    pub attrs: u32,
    /// The data (as hex in JSON).
    #[serde(serialize_with = "crate::bytes::serialize_hex")]
    pub data: Vec<u8>,
}

/// Why variable contents are not what a variable holds.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    /// Shorter than the attribute word.
    #[error("{var}: {len} bytes, shorter than the 4-byte attribute word")]
    Short {
        /// The variable.
        var: String,
        /// Bytes read.
        len: usize,
    },
    /// Longer than [`MAX_DATA`].
    #[error("{var}: {len} bytes of data, more than the {MAX_DATA} expected of it")]
    Long {
        /// The variable.
        var: String,
        /// Bytes of data.
        len: usize,
    },
    /// Data of the wrong size for its type.
    #[error("{var}: {len} bytes of data, expected {want}")]
    Size {
        /// The variable.
        var: String,
        /// Bytes of data.
        len: usize,
        /// Bytes its type has.
        want: usize,
    },
    /// A spec that is not printable ASCII.
    #[error("{var}: not printable ASCII: {text}")]
    NotAscii {
        /// The variable.
        var: String,
        /// The bytes, escaped.
        text: String,
    },
}

// Debug as Display: these errors reach anyhow, whose vtable links Debug; a
// derived Debug of every variant costs kilobytes of the 3 MiB budget.
impl std::fmt::Debug for VarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl VarValue {
    /// NV|BS|RT with `data`.
    pub fn nv(data: Vec<u8>) -> VarValue {
        VarValue {
            attrs: ATTR_NV_BS_RT,
            data,
        }
    }

    /// NV|BS|RT with a little-endian `u32` (`07 00 00 00 01 00 00 00`).
    pub fn nv_u32(v: u32) -> VarValue {
        VarValue::nv(v.to_le_bytes().to_vec())
    }

    /// NV|BS|RT with a little-endian `u64`.
    pub fn nv_u64(v: u64) -> VarValue {
        VarValue::nv(v.to_le_bytes().to_vec())
    }

    /// The efivarfs file contents, written in one `write()`: the kernel
    /// turns a write of the attributes alone into a delete (RAN, §3.4).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ATTR_LEN + self.data.len());
        out.extend_from_slice(&self.attrs.to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Reads an efivarfs file's contents.
    pub fn decode(var: &str, bytes: &[u8]) -> Result<VarValue, VarError> {
        let (attrs, data) = match (bytes.get(..ATTR_LEN), bytes.get(ATTR_LEN..)) {
            (Some(a), Some(d)) => (a, d),
            _ => {
                return Err(VarError::Short {
                    var: var.into(),
                    len: bytes.len(),
                })
            }
        };
        if data.len() > MAX_DATA {
            return Err(VarError::Long {
                var: var.into(),
                len: data.len(),
            });
        }
        let mut w = [0u8; 4];
        w.copy_from_slice(attrs);
        Ok(VarValue {
            attrs: u32::from_le_bytes(w),
            data: data.to_vec(),
        })
    }

    fn fixed<const N: usize>(&self, var: Var) -> Result<[u8; N], VarError> {
        self.data.as_slice().try_into().map_err(|_| VarError::Size {
            var: var.name().into(),
            len: self.data.len(),
            want: N,
        })
    }

    /// The data as a little-endian `u32`.
    pub fn as_u32(&self, var: Var) -> Result<u32, VarError> {
        self.fixed::<4>(var).map(u32::from_le_bytes)
    }

    /// The data as a little-endian `u64`.
    pub fn as_u64(&self, var: Var) -> Result<u64, VarError> {
        self.fixed::<8>(var).map(u64::from_le_bytes)
    }

    /// The data as two little-endian `u32` (`SystemFwVersions`: chain A, chain B).
    pub fn as_u32_pair(&self, var: Var) -> Result<[u32; 2], VarError> {
        let b = self.fixed::<8>(var)?;
        let mut a = [0u8; 4];
        let mut c = [0u8; 4];
        a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
        c.copy_from_slice(b.get(4..).unwrap_or(&[0; 4]));
        Ok([u32::from_le_bytes(a), u32::from_le_bytes(c)])
    }

    /// The data as a spec string: printable ASCII, trailing NULs dropped
    /// (UEFI and our writers store it without one; other tools may not).
    pub fn as_spec(&self, var: Var) -> Result<String, VarError> {
        let end = self.data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let text = self.data.get(..end).unwrap_or(&[]);
        if !text.iter().all(|b| (0x20..0x7F).contains(b)) {
            return Err(VarError::NotAscii {
                var: var.name().into(),
                text: text.escape_ascii().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(text).into_owned())
    }
}

/// A boot chain as a `u32` value of `BootChainFwCurrent`/`BootChainFwNext`.
pub fn chain_value(slot: Slot) -> u32 {
    slot.index() as u32
}

/// The chain a `u32` value names, if any.
pub fn chain_of(value: u32) -> Option<Slot> {
    match value {
        0 => Some(Slot::A),
        1 => Some(Slot::B),
        _ => None,
    }
}

/// The name of a `BootChainFwStatus` value (edk2-nvidia
/// `BootChainDxePrivate.h`, r35.2 to main).
pub fn boot_chain_status_name(v: u32) -> &'static str {
    match v {
        0 => "SUCCESS",
        1 => "IN_PROGRESS",
        2 => "NO_OPERATION_REQUIRED",
        3 => "CANCELED_FOR_FMP_CONFLICT",
        4 => "READING_STATUS",
        5 => "MAX_RESET_COUNT",
        6 => "SETTING_RESET_COUNT",
        7 => "SETTING_IN_PROGRESS",
        8 => "IN_PROGRESS_FAILED",
        9 => "BAD_BOOT_CHAIN_NEXT",
        10 => "READING_NEXT",
        11 => "UPDATING_FW_CHAIN",
        12 => "BOOT_CHAIN_FAILED",
        13 => "READING_RESET_COUNT",
        14 => "BOOT_NEXT_EXISTS",
        15 => "READING_SCRATCH",
        16 => "SETTING_SCRATCH",
        17 => "UPDATE_BR_BCT_FLAG_SET",
        18 => "SETTING_PREVIOUS",
        19 => "BOOT_CHAIN_IS_FAILED",
        _ => "unknown",
    }
}

/// Why a variable store operation failed.
#[derive(thiserror::Error)]
pub enum StoreError {
    /// The store's own I/O error, with what was being done.
    #[error("{0}")]
    Io(String),
    /// Contents that do not decode.
    #[error(transparent)]
    Var(#[from] VarError),
}

// Debug as Display: these errors reach anyhow, whose vtable links Debug; a
// derived Debug of every variant costs kilobytes of the 3 MiB budget.
impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Where variables live: efivarfs on a board, a map in tests. Every method
/// is one action; [`crate::uefi::varplan::apply`] composes them.
pub trait VarStore {
    /// The variable's contents, or `None` when it does not exist.
    fn read(&mut self, var: Var) -> Result<Option<VarValue>, StoreError>;
    /// Creates or replaces the variable with exactly `value`.
    fn write(&mut self, var: Var, value: &VarValue) -> Result<(), StoreError>;
    /// Deletes the variable; deleting one that does not exist is not an error.
    fn delete(&mut self, var: Var) -> Result<(), StoreError>;
}

/// An in-memory [`VarStore`] for tests of the code above the sys layer.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    /// The variables.
    pub vars: std::collections::BTreeMap<String, VarValue>,
    /// Writes and deletes done, in order (`"write X"`, `"delete X"`).
    pub log: Vec<String>,
}

impl VarStore for MemStore {
    fn read(&mut self, var: Var) -> Result<Option<VarValue>, StoreError> {
        Ok(self.vars.get(var.name()).cloned())
    }

    fn write(&mut self, var: Var, value: &VarValue) -> Result<(), StoreError> {
        self.log.push(format!("write {var}"));
        self.vars.insert(var.name().into(), value.clone());
        Ok(())
    }

    fn delete(&mut self, var: Var) -> Result<(), StoreError> {
        self.log.push(format!("delete {var}"));
        self.vars.remove(var.name());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_guids_as_efivarfs_shows_them() {
        assert_eq!(
            Var::BootChainFwNext.file_name(),
            "BootChainFwNext-781e084c-a330-417c-b678-38e696380cb9"
        );
        assert_eq!(
            Var::OsIndications.file_name(),
            "OsIndications-8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
        assert_eq!(
            TEGRA_FMP_IMAGE_TYPE.to_string().to_ascii_lowercase(),
            "bf0d4599-20d4-414e-b2c5-3595b1cda402"
        );
        assert_eq!(Var::rootfs_status(Slot::B), Var::RootfsStatusSlotB);
        let mut names: Vec<&str> = Var::ALL.iter().map(|v| v.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Var::ALL.len());
    }

    #[test]
    fn encodings_of_the_document() {
        // t234-boot-chain.md §0, §3.5.
        assert_eq!(VarValue::nv_u32(1).encode(), [7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(VarValue::nv_u32(0).encode(), [7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            VarValue::nv_u64(OS_INDICATIONS_FILE_CAPSULE_DELIVERY).encode(),
            [7, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
        );
        let spec = VarValue::nv(b"3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-".to_vec());
        assert!(spec.encode().starts_with(b"\x07\x00\x00\x003701"));
    }

    #[test]
    fn decoding_checks_sizes() {
        let v = VarValue::decode("X", &[6, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        assert_eq!(v.attrs, 6);
        assert_eq!(v.as_u32(Var::BootChainFwCurrent).unwrap(), 1);
        assert_eq!(
            v.as_u64(Var::OsIndications).unwrap_err().to_string(),
            "OsIndications: 4 bytes of data, expected 8"
        );
        assert!(VarValue::decode("X", &[7, 0, 0]).is_err());
        assert!(VarValue::decode("X", &vec![0; MAX_DATA + 5]).is_err());
        let pair = VarValue::decode("X", &[6, 0, 0, 0, 3, 4, 0x24, 0, 0, 5, 0x23, 0]).unwrap();
        assert_eq!(
            pair.as_u32_pair(Var::SystemFwVersions).unwrap(),
            [0x0024_0403, 0x0023_0500]
        );
        let spec = VarValue::nv(b"a-b-\0\0".to_vec());
        assert_eq!(spec.as_spec(Var::TegraPlatformSpec).unwrap(), "a-b-");
        assert!(VarValue::nv(b"a\x01".to_vec())
            .as_spec(Var::TegraPlatformSpec)
            .is_err());
    }

    #[test]
    fn chains_and_statuses() {
        assert_eq!(chain_of(chain_value(Slot::B)), Some(Slot::B));
        assert_eq!(chain_of(2), None);
        assert_eq!(boot_chain_status_name(3), "CANCELED_FOR_FMP_CONFLICT");
        assert_eq!(boot_chain_status_name(99), "unknown");
    }
}
