//! Who the running board is, from what `sys::board` read: the CVM EEPROM, the
//! SoC, the kernel command line and the board configuration file. Pure; the
//! reading is done by [`crate::sys::board`].
//!
//! The TNSPEC is built as OE4T's `tegra-boardspec` and `tegra-bootloader-update`
//! build it (docs/spec/bup-format.md §2.2):
//!
//! ```text
//! BOARDID-FAB-BOARDSKU-BOARDREV-FUSELEVEL-CHIPREV  -  MACHINE  -  ROOTFSDEV
//! └──────── part number in the CVM EEPROM ───────┘   └── board config ──┘
//! ```

#![deny(clippy::indexing_slicing)]

use crate::layout::Soc;
use serde::Serialize;
use std::path::PathBuf;

/// Bytes of the CVM EEPROM layout (version 1).
pub const EEPROM_LEN: usize = 256;
/// EEPROM layout version we understand.
const LAYOUT_VERSION: u16 = 1;
/// `partnumber[22]` starts here.
const OFF_PARTNUMBER: usize = 20;
const PARTNUMBER_LEN: usize = 22;
/// `cfgblk_sig`, "NVCB" on a CVM.
const OFF_CFGBLK_SIG: usize = 150;
/// `macfmt_tag`, "M1".
const OFF_MACFMT_TAG: usize = 156;
/// `macfmt_version`, 0.
const OFF_MACFMT_VERSION: usize = 158;
/// The CRC-8 over bytes 0..255.
const OFF_CRC8: usize = 255;
/// First byte of a customer (non-NVIDIA) part number.
const CUSTOMER_PART_NUMBER: u8 = 0xCC;
/// FUSELEVEL of every spec the OE4T and NVIDIA payload builders emit.
/// tegra-eeprom-tool ≥ 1.4 hard-codes it too: unfused development kits
/// report `tegra_prod_mode` 0 but still need the `-1-` entries.
pub const FUSELEVEL: &str = "1";
/// ROOTFSDEV when the configuration names none (tegra-boot-tools' default).
pub const DEFAULT_ROOTFS_DEVICE: &str = "mmcblk0p1";
/// The kernel argument that names the booted slot.
const SLOT_SUFFIX_ARG: &str = "boot.slot_suffix=";
/// REF reads only this much of /proc/cmdline.
pub const CMDLINE_MAX: usize = 4095;

/// Why the EEPROM contents give no board identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EepromError {
    /// Not the 256 bytes of the layout.
    #[error("EEPROM holds {0} bytes, expected {EEPROM_LEN}")]
    Size(usize),
    /// The CRC-8 does not match.
    #[error("EEPROM CRC-8 mismatch (stored {stored:#04x}, computed {computed:#04x})")]
    Crc {
        /// Byte 255.
        stored: u8,
        /// Over bytes 0..255.
        computed: u8,
    },
    /// Layout version other than 1.
    #[error("EEPROM layout version {0} (expected 1)")]
    Version(u16),
    /// Not a module (CVM) EEPROM.
    #[error("EEPROM is not a module EEPROM (no NVCB/M1 configuration block)")]
    NotCvm,
    /// A customer part number, which carries no NVIDIA board id.
    #[error("EEPROM holds a customer part number; give --tnspec")]
    CustomerPartNumber,
    /// Unprintable bytes in the part number.
    #[error("EEPROM part number '{0}' is not printable ASCII")]
    Unprintable(String),
    /// Too short for `699-Xbbbb-ssss-fff`.
    #[error("EEPROM part number '{0}' is too short for 699-Xbbbb-ssss-fff")]
    TooShort(String),
}

/// CRC-8/MAXIM (reflected polynomial 0x31, initial value 0), the CRC of
/// NVIDIA's module EEPROM layout.
pub fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |mut crc, &b| {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8C
            } else {
                crc >> 1
            };
        }
        crc
    })
}

/// The I²C bus and address of the CVM EEPROM for a SoC.
pub fn cvm_eeprom_address(soc: Soc) -> (u32, u16) {
    match soc {
        Soc::T186 => (7, 0x50),
        Soc::T194 | Soc::T234 => (0, 0x50),
        Soc::T210 => (2, 0x50),
    }
}

/// The module part number in a CVM EEPROM image, checked as
/// tegra-eeprom-tool checks it: CRC-8, layout version 1, `NVCB`, `M1`, MAC
/// format 0, and an NVIDIA (not customer) part number. Trailing 0xFF or NUL
/// padding is removed.
pub fn eeprom_part_number(raw: &[u8]) -> Result<String, EepromError> {
    let e = raw.get(..EEPROM_LEN).ok_or(EepromError::Size(raw.len()))?;
    let stored = e.get(OFF_CRC8).copied().unwrap_or(0);
    let computed = crc8(e.get(..OFF_CRC8).unwrap_or(&[]));
    if stored != computed {
        return Err(EepromError::Crc { stored, computed });
    }
    let u16_at = |o: usize| {
        u16::from_le_bytes([
            e.get(o).copied().unwrap_or(0),
            e.get(o + 1).copied().unwrap_or(0),
        ])
    };
    let version = u16_at(0);
    if version != LAYOUT_VERSION {
        return Err(EepromError::Version(version));
    }
    if e.get(OFF_CFGBLK_SIG..OFF_CFGBLK_SIG + 4) != Some(b"NVCB")
        || e.get(OFF_MACFMT_TAG..OFF_MACFMT_TAG + 2) != Some(b"M1")
        || u16_at(OFF_MACFMT_VERSION) != 0
    {
        return Err(EepromError::NotCvm);
    }
    let pn = e
        .get(OFF_PARTNUMBER..OFF_PARTNUMBER + PARTNUMBER_LEN)
        .unwrap_or(&[]);
    if pn.first() == Some(&CUSTOMER_PART_NUMBER) {
        return Err(EepromError::CustomerPartNumber);
    }
    // Padded with 0xFF or NUL; C reads it as a string, so it ends at a NUL.
    let pad = pn.last().copied().filter(|&b| b == 0xFF || b == 0);
    let end = pn
        .iter()
        .rposition(|&b| Some(b) != pad)
        .map_or(0, |p| p + 1);
    let pn = pn.get(..end).unwrap_or(&[]);
    let pn = pn.split(|&b| b == 0).next().unwrap_or(&[]);
    if !pn.iter().all(|b| (0x20..0x7F).contains(b)) {
        return Err(EepromError::Unprintable(pn.escape_ascii().to_string()));
    }
    Ok(String::from_utf8_lossy(pn).into_owned())
}

/// The board part of a TNSPEC from a part number `699-Xbbbb-ssss-fff RRR`:
/// `bbbb-fff-ssss-RRR-1-CHIPREV`. BOARDREV is used only when a blank precedes
/// it (some EEPROMs have none); CHIPREV is 2 on T194 and 0 elsewhere, as in
/// tegra-eeprom-tool.
pub fn boardspec(part_number: &str, soc: Soc) -> Result<String, EepromError> {
    let pn = part_number.as_bytes();
    let text = |from: usize, to: usize| {
        pn.get(from..to.min(pn.len()))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    if pn.len() < 18 {
        return Err(EepromError::TooShort(part_number.to_owned()));
    }
    let rev = if pn.get(18) == Some(&b' ') && pn.get(19).is_some_and(|b| (0x20..0x7F).contains(b)) {
        text(19, 22)
    } else {
        String::new()
    };
    let chiprev = if soc == Soc::T194 { 2 } else { 0 };
    Ok(format!(
        "{}-{}-{}-{rev}-{FUSELEVEL}-{chiprev}",
        text(5, 9),
        text(15, 18),
        text(10, 14)
    ))
}

/// `BOARDSPEC-MACHINE-ROOTFSDEV`. (REF cuts the result at 126 bytes; a spec
/// that long matches no payload entry anyway, so we do not cut it.)
pub fn tnspec(boardspec: &str, machine: &str, rootfs_device: &str) -> String {
    format!("{boardspec}-{machine}-{rootfs_device}")
}

/// The SoC from `/sys/module/tegra_fuse/parameters/tegra_chip_id`, which the
/// kernel prints in decimal (24 = 0x18). 0x23 (T234) is mapped too, which
/// tegra-eeprom-tool forgets.
pub fn soc_from_chip_id(text: &str) -> Option<Soc> {
    let digits: String = text
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<u32>().ok()? {
        0x18 => Some(Soc::T186),
        0x19 => Some(Soc::T194),
        0x21 => Some(Soc::T210),
        0x23 => Some(Soc::T234),
        _ => None,
    }
}

/// The SoC from `/proc/device-tree/compatible` (NUL-separated strings).
pub fn soc_from_compatible(raw: &[u8]) -> Option<Soc> {
    raw.split(|&b| b == 0).find_map(|s| match s {
        b"nvidia,tegra186" => Some(Soc::T186),
        b"nvidia,tegra194" => Some(Soc::T194),
        b"nvidia,tegra210" => Some(Soc::T210),
        b"nvidia,tegra234" => Some(Soc::T234),
        _ => None,
    })
}

/// A boot slot of the T186/T194 A/B scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Slot {
    /// Slot 0: partitions without suffix.
    A,
    /// Slot 1: `_b` partitions.
    B,
}

impl Slot {
    /// 0 for A, 1 for B (the SMD slot index).
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// "A" or "B".
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

/// Why the command line names no slot we know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel command line has boot.slot_suffix={0}, expected _a, _b or nothing")]
pub struct SlotSuffixError(pub String);

/// The booted slot from the kernel command line (REF's
/// `smd_get_current_slot`): `boot.slot_suffix=_b` is B; `_a`, an empty value
/// or no such argument is A. REF finds the argument with `strstr` and fails
/// on a newline right after `=`; we take whole arguments, so an empty suffix
/// at the end of the line is A.
pub fn current_slot(cmdline: &str) -> Result<Slot, SlotSuffixError> {
    let head = cmdline.get(..CMDLINE_MAX).unwrap_or(cmdline);
    let Some(value) = head
        .split_ascii_whitespace()
        .find_map(|arg| arg.strip_prefix(SLOT_SUFFIX_ARG))
    else {
        return Ok(Slot::A);
    };
    if value.starts_with("_b") {
        Ok(Slot::B)
    } else if value.is_empty() || value.starts_with("_a") {
        Ok(Slot::A)
    } else {
        Err(SlotSuffixError(value.chars().take(16).collect()))
    }
}

/// The board configuration file, `/etc/sysinstall/board.conf` (see
/// docs/board-identity.md): `key=value` lines, `#` comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardConfig {
    /// `machine=`: the MACHINE of the TNSPEC (the Yocto `MACHINE`).
    pub machine: Option<String>,
    /// `rootfs-device=`: the ROOTFSDEV of the TNSPEC (default `mmcblk0p1`).
    pub rootfs_device: Option<String>,
    /// `boot-device=`: boot0 and boot1, or the SPI flash.
    pub boot_devices: Vec<PathBuf>,
}

/// A line of the board configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ConfigError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

impl BoardConfig {
    /// Parses the file's text. Unknown keys are errors, so a typo is not
    /// silently ignored.
    pub fn parse(text: &str) -> Result<BoardConfig, ConfigError> {
        let mut c = BoardConfig::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |problem: String| ConfigError {
                line: n + 1,
                problem,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(format!("'{line}' is not key=value")))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(err(format!("{} has no value", key.trim())));
            }
            if value.contains(char::is_whitespace) && key.trim() != "boot-device" {
                return Err(err(format!(
                    "{} value '{value}' contains blanks",
                    key.trim()
                )));
            }
            match key.trim() {
                "machine" => c.machine = Some(value.to_owned()),
                "rootfs-device" => c.rootfs_device = Some(value.to_owned()),
                "boot-device" => {
                    c.boot_devices = value.split_whitespace().map(PathBuf::from).collect()
                }
                other => return Err(err(format!("unknown key '{other}'"))),
            }
        }
        Ok(c)
    }
}

/// A value from tegra-boot-tools' one-line files (`machine-name.conf`,
/// `rootfsdev.conf`): the first 127 bytes with trailing blanks and control
/// characters removed.
pub fn legacy_value(text: &str) -> Option<String> {
    let head: String = text.chars().take(127).collect();
    let v = head.trim_end_matches(|c: char| !c.is_ascii_graphic());
    (!v.is_empty()).then(|| v.to_owned())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A valid CVM EEPROM image with this part number.
    pub(crate) fn eeprom(pn: &[u8], pad: u8) -> Vec<u8> {
        let mut e = vec![0u8; 256];
        e[0] = 1;
        let field = &mut e[20..42];
        field.fill(pad);
        field[..pn.len()].copy_from_slice(pn);
        e[150..154].copy_from_slice(b"NVCB");
        e[154] = 28;
        e[156..158].copy_from_slice(b"M1");
        e[255] = crc8(&e[..255]);
        e
    }

    #[test]
    fn crc8_is_the_maxim_crc_of_the_eeprom_table() {
        // First entries of tegra-eeprom-tool's table: 00 5e bc e2.
        assert_eq!([0u8, 1, 2, 3].map(|b| crc8(&[b])), [0x00, 0x5e, 0xbc, 0xe2]);
        // CRC-8/MAXIM check value.
        assert_eq!(crc8(b"123456789"), 0xA1);
    }

    #[test]
    fn part_number_from_a_tx2_eeprom() {
        let e = eeprom(b"699-83310-1000-B01 L.0", 0xFF);
        let pn = eeprom_part_number(&e).unwrap();
        assert_eq!(pn, "699-83310-1000-B01 L.0");
        let spec = boardspec(&pn, Soc::T186).unwrap();
        assert_eq!(spec, "3310-B01-1000-L.0-1-0");
        assert_eq!(
            tnspec(&spec, "jetson-tx2-devkit", "mmcblk0p1"),
            "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1"
        );
        // The Xavier NX of docs/spec/bup-format.md §6.3, with NUL padding.
        let e = eeprom(b"699-13668-0001-301 J.0", 0);
        let pn = eeprom_part_number(&e).unwrap();
        assert_eq!(boardspec(&pn, Soc::T194).unwrap(), "3668-301-0001-J.0-1-2");
    }

    #[test]
    fn missing_board_revision_stays_empty() {
        for pn in [
            "699-83310-1000-B01",
            "699-83310-1000-B01X.0",
            "699-83310-1000-B01 \x01",
        ] {
            assert_eq!(
                boardspec(pn, Soc::T186).unwrap(),
                "3310-B01-1000--1-0",
                "{pn}"
            );
        }
        assert!(matches!(
            boardspec("699-83310-1000-B", Soc::T186),
            Err(EepromError::TooShort(_))
        ));
    }

    #[test]
    fn eeprom_rejections() {
        let good = eeprom(b"699-83310-1000-B01 L.0", 0xFF);
        assert_eq!(
            eeprom_part_number(&good[..200]),
            Err(EepromError::Size(200))
        );
        let mut bad = good.clone();
        bad[30] ^= 1;
        assert!(matches!(
            eeprom_part_number(&bad),
            Err(EepromError::Crc { .. })
        ));
        let mut v2 = good.clone();
        v2[0] = 2;
        v2[255] = crc8(&v2[..255]);
        assert_eq!(eeprom_part_number(&v2), Err(EepromError::Version(2)));
        let mut sig = good.clone();
        sig[150] = b'X';
        sig[255] = crc8(&sig[..255]);
        assert_eq!(eeprom_part_number(&sig), Err(EepromError::NotCvm));
        let customer = eeprom(b"\xccACME-BOARD-7", 0xFF);
        assert_eq!(
            eeprom_part_number(&customer),
            Err(EepromError::CustomerPartNumber)
        );
        let weird = eeprom(b"699-8\xe93310", 0);
        assert!(matches!(
            eeprom_part_number(&weird),
            Err(EepromError::Unprintable(_))
        ));
    }

    #[test]
    fn socs_from_chip_id_and_device_tree() {
        assert_eq!(soc_from_chip_id("24\n"), Some(Soc::T186));
        assert_eq!(soc_from_chip_id("25"), Some(Soc::T194));
        assert_eq!(soc_from_chip_id("33\n"), Some(Soc::T210));
        assert_eq!(soc_from_chip_id("35"), Some(Soc::T234));
        assert_eq!(soc_from_chip_id("0x18"), None);
        assert_eq!(soc_from_chip_id(""), None);
        assert_eq!(
            soc_from_compatible(b"nvidia,p3310-1000+p2597-0000-a00\0nvidia,tegra186\0"),
            Some(Soc::T186)
        );
        assert_eq!(soc_from_compatible(b"nvidia,tegra1860\0"), None);
    }

    #[test]
    fn slot_from_the_command_line() {
        for (line, want) in [
            ("root=/dev/mmcblk0p1 boot.slot_suffix=_b quiet", Ok(Slot::B)),
            ("boot.slot_suffix=_a", Ok(Slot::A)),
            ("boot.slot_suffix= quiet", Ok(Slot::A)),
            // REF reads `\n` right after '=' as an error; an empty suffix is A.
            ("console=ttyS0 boot.slot_suffix=\n", Ok(Slot::A)),
            ("console=ttyS0", Ok(Slot::A)),
            ("boot.slot_suffix=_c", Err(SlotSuffixError("_c".into()))),
            ("boot.slot_suffix=b", Err(SlotSuffixError("b".into()))),
        ] {
            assert_eq!(current_slot(line), want, "{line:?}");
        }
        // Only the first 4095 bytes count, as in REF.
        let late = format!("{} boot.slot_suffix=_b", "x".repeat(CMDLINE_MAX));
        assert_eq!(current_slot(&late), Ok(Slot::A));
    }

    #[test]
    fn board_config_file() {
        let c = BoardConfig::parse(
            "# written by the image recipe\nmachine=jetson-tx2-devkit\n\n rootfs-device = mmcblk0p1 \nboot-device=/dev/mmcblk0boot0 /dev/mmcblk0boot1\n",
        )
        .unwrap();
        assert_eq!(c.machine.as_deref(), Some("jetson-tx2-devkit"));
        assert_eq!(c.rootfs_device.as_deref(), Some("mmcblk0p1"));
        assert_eq!(c.boot_devices.len(), 2);
        assert_eq!(
            BoardConfig::parse("machine=x\nmachin=y")
                .unwrap_err()
                .to_string(),
            "line 2: unknown key 'machin'"
        );
        assert!(BoardConfig::parse("machine=").is_err());
        assert!(BoardConfig::parse("machine").is_err());
        assert!(BoardConfig::parse("machine=a b").is_err());
    }

    #[test]
    fn legacy_files_are_trimmed_like_ref() {
        assert_eq!(
            legacy_value("jetson-tx2-devkit\n").as_deref(),
            Some("jetson-tx2-devkit")
        );
        assert_eq!(legacy_value(" \n"), None);
        assert_eq!(legacy_value(&"m".repeat(200)).unwrap().len(), 127);
    }
}
