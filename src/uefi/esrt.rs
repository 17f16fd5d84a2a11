//! What the running firmware says about itself: the EFI System Resource
//! Table as Linux exports it (`/sys/firmware/efi/esrt/entries/entry*/`),
//! and the boot-chain variables (docs: t234-boot-chain.md §2.1 step 7,
//! §3.1). Pure: [`EsrtEntry::parse`] takes the files' text,
//! [`FirmwareState::read`] takes a [`VarStore`]; [`crate::sys::esrt`] reads
//! the directory.
//!
//! The ESRT entry of the system firmware carries the version of the chain
//! that booted (`fw_version`), the ratchet (`lowest_supported_fw_version`),
//! and the outcome of the last capsule (`last_attempt_version`,
//! `last_attempt_status`). `SystemFwVersions` adds the version of each chain,
//! which is how a second capsule pass is known to be needed.

#![deny(clippy::indexing_slicing)]

use super::vars::{self, Var, VarStore, VarValue};
use super::version::FwVersion;
use crate::bup::board::Slot;
use crate::guid::Guid;
use serde::Serialize;
use std::collections::BTreeMap;

/// `ESRT_FW_TYPE_SYSTEMFIRMWARE`.
pub const FW_TYPE_SYSTEM: u32 = 1;
/// `LAST_ATTEMPT_STATUS_SUCCESS`.
pub const LAST_ATTEMPT_SUCCESS: u32 = 0;
/// First code of the FMP device library range, where edk2-nvidia's
/// `TegraFmp.c` numbers its `LAS_ERROR_*` (`0x1800`).
pub const DEVICE_LIBRARY_MIN: u32 = 0x1800;
/// The files of an entry directory that are read.
pub const ENTRY_FILES: [&str; 7] = [
    "fw_class",
    "fw_type",
    "fw_version",
    "lowest_supported_fw_version",
    "capsule_flags",
    "last_attempt_version",
    "last_attempt_status",
];
/// `TegraFmp.c`'s `LAS_ERROR_*`, from [`DEVICE_LIBRARY_MIN`] on (the enum only
/// grew at its end from r35.2 to main).
const TEGRA_LAS: [&str; 27] = [
    "BAD_IMAGE_POINTER",
    "INVALID_PACKAGE_HEADER",
    "UNSUPPORTED_PACKAGE_TYPE",
    "INVALID_PACKAGE_IMAGE_INFO_ARRAY",
    "IMAGE_TOO_BIG",
    "PACKAGE_SIZE_ERROR",
    "NOT_UPDATABLE",
    "IMAGE_NOT_IN_PACKAGE",
    "MB1_INVALIDATE_ERROR",
    "SINGLE_IMAGE_NOT_SUPPORTED",
    "IMAGE_INDEX_MISSING",
    "NO_PROTOCOL_FOR_IMAGE",
    "IMAGE_ATTRIBUTES_ERROR",
    "BCT_UPDATE_FAILED",
    "WRITE_IMAGES_FAILED",
    "MB1_WRITE_ERROR",
    "VERIFY_IMAGES_FAILED",
    "SET_SINGLE_IMAGE_FAILED",
    "FMP_LIB_UNINITIALIZED",
    "BOOT_CHAIN_UPDATE_CANCELED",
    "GPT_METADATA_UPDATE_FAILED",
    "GPT_VERIFY_FAILED",
    "GPT_INVALIDATE_FAILED",
    "GPT_WRITE_FAILED",
    "SET_INACTIVE_BOOT_CHAIN_BAD_FAILED",
    "SET_INACTIVE_BOOT_CHAIN_GOOD_FAILED",
    "UPDATE_BCT_BACKUP_PARTITION_FAILED",
];

/// What a `last_attempt_status` means, in words.
pub fn last_attempt_status_text(v: u32) -> String {
    let standard = match v {
        0 => Some("success"),
        1 => Some("unsuccessful"),
        2 => Some("insufficient resources"),
        3 => Some("incorrect version (below the lowest supported version?)"),
        4 => Some("invalid format"),
        5 => Some("authentication error (signature not trusted by this firmware?)"),
        6 => Some("AC power insufficient"),
        7 => Some("battery insufficient"),
        8 => Some("unsatisfied dependencies"),
        _ => None,
    };
    if let Some(s) = standard {
        return s.to_owned();
    }
    let tegra = v
        .checked_sub(DEVICE_LIBRARY_MIN)
        .and_then(|i| TEGRA_LAS.get(i as usize));
    match (tegra, v) {
        (Some(name), _) => format!("Tegra FMP error {v}: {name}"),
        (None, 0x1000..=0x17FF) => format!("FmpDxe error {v} ({v:#x})"),
        (None, 0x1800..=0x3FFF) => format!("vendor error {v} ({v:#x})"),
        _ => format!("unknown status {v} ({v:#x})"),
    }
}

/// One ESRT entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EsrtEntry {
    /// The entry's directory name (`entry0`).
    pub name: String,
    /// `fw_class`: the FMP image type this entry describes.
    pub fw_class: Guid,
    /// `fw_type` (1 system firmware).
    pub fw_type: u32,
    /// Version of the running firmware.
    pub fw_version: FwVersion,
    /// The ratchet: capsules below this are refused.
    pub lowest_supported_fw_version: FwVersion,
    /// `capsule_flags`.
    pub capsule_flags: u32,
    /// Version of the last capsule tried (0: none).
    pub last_attempt_version: FwVersion,
    /// Outcome of the last capsule tried.
    pub last_attempt_status: u32,
}

/// Why an ESRT entry cannot be read.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum EsrtError {
    /// A file is missing.
    #[error("ESRT {entry}: no {file}")]
    Missing {
        /// Entry directory.
        entry: String,
        /// File name.
        file: String,
    },
    /// A file's text is not what the kernel writes.
    #[error("ESRT {entry}/{file}: '{text}' is not a {what}")]
    Bad {
        /// Entry directory.
        entry: String,
        /// File name.
        file: String,
        /// Its text (shortened).
        text: String,
        /// What was expected.
        what: &'static str,
    },
}

// Debug as Display: these errors reach anyhow, whose vtable links Debug; a
// derived Debug of every variant costs kilobytes of the 3 MiB budget.
impl std::fmt::Debug for EsrtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn number(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

impl EsrtEntry {
    /// An entry from the text of its files (`file name → contents`), as the
    /// kernel writes them (numbers in decimal, `capsule_flags` in hex, the
    /// GUID in lower case).
    pub fn parse(name: &str, files: &BTreeMap<String, String>) -> Result<EsrtEntry, EsrtError> {
        let get = |file: &str| {
            files.get(file).ok_or_else(|| EsrtError::Missing {
                entry: name.into(),
                file: file.into(),
            })
        };
        let bad = |file: &str, text: &str, what| EsrtError::Bad {
            entry: name.into(),
            file: file.into(),
            text: text.trim().chars().take(40).collect(),
            what,
        };
        let num = |file: &str| -> Result<u32, EsrtError> {
            let t = get(file)?;
            number(t).ok_or_else(|| bad(file, t, "number"))
        };
        let class = get("fw_class")?;
        Ok(EsrtEntry {
            name: name.into(),
            fw_class: Guid::parse(class).map_err(|_| bad("fw_class", class, "GUID"))?,
            fw_type: num("fw_type")?,
            fw_version: FwVersion(num("fw_version")?),
            lowest_supported_fw_version: FwVersion(num("lowest_supported_fw_version")?),
            capsule_flags: num("capsule_flags")?,
            last_attempt_version: FwVersion(num("last_attempt_version")?),
            last_attempt_status: num("last_attempt_status")?,
        })
    }

    /// True when the last capsule was applied.
    pub fn last_attempt_succeeded(&self) -> bool {
        self.last_attempt_status == LAST_ATTEMPT_SUCCESS && self.last_attempt_version.0 != 0
    }
}

/// The firmware facts of a running system: the ESRT and the boot-chain
/// variables. Variables that are absent are `None`; ones that exist but do
/// not decode are `None` with a line in `unreadable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirmwareState {
    /// The ESRT entries; `None` when the system has no ESRT (no UEFI boot,
    /// or firmware without one, such as QEMU's).
    pub esrt: Option<Vec<EsrtEntry>>,
    /// `BootChainFwCurrent`: the chain that booted.
    pub current_chain: Option<Slot>,
    /// `BootChainFwNext`, raw.
    pub next_chain: Option<u32>,
    /// `BootChainFwStatus`, raw.
    pub chain_status: Option<u32>,
    /// `SystemFwVersions`: chain A, chain B.
    pub system_fw_versions: Option<[FwVersion; 2]>,
    /// `OsIndications`.
    pub os_indications: Option<u64>,
    /// `RootfsStatusSlotA`, `RootfsStatusSlotB`.
    pub rootfs_status: [Option<u32>; 2],
    /// `RootfsRedundancyLevel`.
    pub redundancy_level: Option<u32>,
    /// `TegraPlatformSpec`.
    pub platform_spec: Option<String>,
    /// `TegraPlatformCompatSpec`.
    pub compat_spec: Option<String>,
    /// Variables that exist but could not be decoded, one line each.
    pub unreadable: Vec<String>,
}

impl FirmwareState {
    /// Reads every variable the state holds from `store`; `esrt` is what
    /// [`crate::sys::esrt::read`] found.
    pub fn read(store: &mut dyn VarStore, esrt: Option<Vec<EsrtEntry>>) -> FirmwareState {
        let mut s = FirmwareState {
            esrt,
            ..FirmwareState::default()
        };
        let mut get = |var: Var| -> Option<VarValue> {
            match store.read(var) {
                Ok(v) => v,
                Err(e) => {
                    s.unreadable.push(e.to_string());
                    None
                }
            }
        };
        let current = get(Var::BootChainFwCurrent);
        let next = get(Var::BootChainFwNext);
        let status = get(Var::BootChainFwStatus);
        let versions = get(Var::SystemFwVersions);
        let osi = get(Var::OsIndications);
        let rs_a = get(Var::RootfsStatusSlotA);
        let rs_b = get(Var::RootfsStatusSlotB);
        let level = get(Var::RootfsRedundancyLevel);
        let spec = get(Var::TegraPlatformSpec);
        let compat = get(Var::TegraPlatformCompatSpec);
        let mut bad = Vec::new();
        fn keep<T>(bad: &mut Vec<String>, r: Option<Result<T, vars::VarError>>) -> Option<T> {
            match r? {
                Ok(v) => Some(v),
                Err(e) => {
                    bad.push(e.to_string());
                    None
                }
            }
        }
        let u32_of = |v: &Option<VarValue>, var| v.as_ref().map(|v| v.as_u32(var));
        let current_raw = keep(&mut bad, u32_of(&current, Var::BootChainFwCurrent));
        s.current_chain = current_raw.and_then(vars::chain_of);
        if let (Some(raw), None) = (current_raw, s.current_chain) {
            bad.push(format!("BootChainFwCurrent: {raw} is not a chain (0 or 1)"));
        }
        s.next_chain = keep(&mut bad, u32_of(&next, Var::BootChainFwNext));
        s.chain_status = keep(&mut bad, u32_of(&status, Var::BootChainFwStatus));
        s.system_fw_versions = keep(
            &mut bad,
            versions
                .as_ref()
                .map(|v| v.as_u32_pair(Var::SystemFwVersions)),
        )
        .map(|[a, b]| [FwVersion(a), FwVersion(b)]);
        s.os_indications = keep(&mut bad, osi.as_ref().map(|v| v.as_u64(Var::OsIndications)));
        s.rootfs_status = [
            keep(&mut bad, u32_of(&rs_a, Var::RootfsStatusSlotA)),
            keep(&mut bad, u32_of(&rs_b, Var::RootfsStatusSlotB)),
        ];
        s.redundancy_level = keep(&mut bad, u32_of(&level, Var::RootfsRedundancyLevel));
        s.platform_spec = keep(
            &mut bad,
            spec.as_ref().map(|v| v.as_spec(Var::TegraPlatformSpec)),
        );
        s.compat_spec = keep(
            &mut bad,
            compat
                .as_ref()
                .map(|v| v.as_spec(Var::TegraPlatformCompatSpec)),
        );
        s.unreadable.extend(bad);
        s
    }

    /// The ESRT entry of the system firmware: the one whose `fw_class` is
    /// `image_type` when given, else the only system-firmware entry.
    pub fn system_entry(&self, image_type: Option<Guid>) -> Option<&EsrtEntry> {
        let entries = self.esrt.as_deref()?;
        if let Some(g) = image_type {
            if let Some(e) = entries.iter().find(|e| e.fw_class == g) {
                return Some(e);
            }
        }
        let mut system = entries.iter().filter(|e| e.fw_type == FW_TYPE_SYSTEM);
        match (system.next(), system.next()) {
            (Some(e), None) => Some(e),
            _ => None,
        }
    }

    /// The running chain's firmware version: the ESRT's, else
    /// `SystemFwVersions` of the current chain.
    pub fn running_version(&self, image_type: Option<Guid>) -> Option<FwVersion> {
        if let Some(e) = self.system_entry(image_type) {
            return Some(e.fw_version);
        }
        let chain = self.current_chain?;
        self.chain_version(chain)
    }

    /// The version `SystemFwVersions` gives a chain, unless the firmware
    /// could not read it.
    pub fn chain_version(&self, chain: Slot) -> Option<FwVersion> {
        self.system_fw_versions
            .and_then(|v| v.get(chain.index()).copied())
            .filter(|v| !v.is_unknown())
    }
}

/// ESRT fixtures shared by the unit tests of the `uefi` modules.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    /// The files of a Tegra system-firmware ESRT entry.
    pub fn entry_files(version: u32, lsv: u32, last: u32, status: u32) -> BTreeMap<String, String> {
        [
            (
                "fw_class",
                "bf0d4599-20d4-414e-b2c5-3595b1cda402\n".to_string(),
            ),
            ("fw_type", "1\n".into()),
            ("fw_version", format!("{version}\n")),
            ("lowest_supported_fw_version", format!("{lsv}\n")),
            ("capsule_flags", "0x0\n".into()),
            ("last_attempt_version", format!("{last}\n")),
            ("last_attempt_status", format!("{status}\n")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::entry_files;
    use super::*;
    use crate::uefi::vars::{MemStore, TEGRA_FMP_IMAGE_TYPE};

    #[test]
    fn an_entry_as_the_kernel_writes_it() {
        let e = EsrtEntry::parse(
            "entry0",
            &entry_files(0x0024_0403, 0x0024_0000, 0x0024_0403, 0),
        )
        .unwrap();
        assert_eq!(e.fw_class, TEGRA_FMP_IMAGE_TYPE);
        assert_eq!(e.fw_version.to_string(), "36.4.3");
        assert_eq!(e.lowest_supported_fw_version.to_string(), "36.0.0");
        assert!(e.last_attempt_succeeded());

        let mut f = entry_files(1, 1, 1, 0);
        f.remove("fw_version");
        assert_eq!(
            EsrtEntry::parse("entry0", &f).unwrap_err().to_string(),
            "ESRT entry0: no fw_version"
        );
        let mut f = entry_files(1, 1, 1, 0);
        f.insert("fw_class".into(), "nope".into());
        assert!(EsrtEntry::parse("entry0", &f)
            .unwrap_err()
            .to_string()
            .ends_with("is not a GUID"));
        f = entry_files(1, 1, 1, 0);
        f.insert("last_attempt_status".into(), "-1".into());
        assert!(EsrtEntry::parse("entry0", &f).is_err());
    }

    #[test]
    fn last_attempt_statuses_in_words() {
        assert_eq!(last_attempt_status_text(0), "success");
        assert!(last_attempt_status_text(3).starts_with("incorrect version"));
        assert_eq!(
            last_attempt_status_text(6163),
            "Tegra FMP error 6163: BOOT_CHAIN_UPDATE_CANCELED"
        );
        assert_eq!(
            last_attempt_status_text(6151),
            "Tegra FMP error 6151: IMAGE_NOT_IN_PACKAGE"
        );
        assert_eq!(
            last_attempt_status_text(0x1001),
            "FmpDxe error 4097 (0x1001)"
        );
        assert_eq!(
            last_attempt_status_text(0x2000),
            "vendor error 8192 (0x2000)"
        );
        assert_eq!(
            last_attempt_status_text(0x4000),
            "unknown status 16384 (0x4000)"
        );
    }

    #[test]
    fn state_from_variables() {
        let mut m = MemStore::default();
        let mut put = |v: Var, val: VarValue| {
            m.vars.insert(v.name().into(), val);
        };
        put(
            Var::BootChainFwCurrent,
            VarValue {
                attrs: 6,
                data: 1u32.to_le_bytes().to_vec(),
            },
        );
        put(Var::BootChainFwStatus, VarValue::nv_u32(3));
        put(
            Var::SystemFwVersions,
            VarValue {
                attrs: 6,
                data: [0x0023_0500u32.to_le_bytes(), 0x0024_0403u32.to_le_bytes()].concat(),
            },
        );
        put(Var::RootfsStatusSlotA, VarValue::nv_u32(0xFF));
        put(
            Var::TegraPlatformSpec,
            VarValue::nv(b"3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-".to_vec()),
        );
        put(Var::OsIndications, VarValue::nv(vec![4, 0, 0]));
        let s = FirmwareState::read(&mut m, None);
        assert_eq!(s.current_chain, Some(Slot::B));
        assert_eq!(s.chain_status, Some(3));
        assert_eq!(s.next_chain, None);
        assert_eq!(s.rootfs_status, [Some(0xFF), None]);
        assert_eq!(s.chain_version(Slot::A), Some(FwVersion::new(35, 5, 0)));
        assert_eq!(s.running_version(None), Some(FwVersion::new(36, 4, 3)));
        assert_eq!(s.os_indications, None);
        assert_eq!(s.unreadable, ["OsIndications: 3 bytes of data, expected 8"]);
        assert!(s.platform_spec.unwrap().starts_with("3701-500"));

        // The ESRT wins over SystemFwVersions for the running version.
        let e = EsrtEntry::parse("entry0", &entry_files(0x0024_0404, 0, 0, 0)).unwrap();
        let s = FirmwareState::read(&mut m, Some(vec![e]));
        assert_eq!(
            s.running_version(Some(TEGRA_FMP_IMAGE_TYPE)),
            Some(FwVersion::new(36, 4, 4))
        );
        assert_eq!(
            s.system_entry(Some(Guid::NIL)).map(|e| e.name.as_str()),
            Some("entry0")
        );
    }

    #[test]
    fn unknown_chain_versions_are_not_versions() {
        let s = FirmwareState {
            system_fw_versions: Some([FwVersion(u32::MAX), FwVersion::new(36, 4, 3)]),
            current_chain: Some(Slot::A),
            ..FirmwareState::default()
        };
        assert_eq!(s.chain_version(Slot::A), None);
        assert_eq!(s.running_version(None), None);
    }
}
