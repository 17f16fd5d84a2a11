//! L4T firmware versions as UEFI carries them: one `u32`,
//! `(branch << 16) | (major << 8) | minor`, so R36.4.3 is `0x00240403`
//! (NVIDIA's `l4t_generate_soc_capsule.sh` and meta-tegra encode the
//! `--fw-version`/`--lsv` of a capsule this way; the firmware's FMP reports
//! the same encoding in the ESRT and `SystemFwVersions`). Pure.

use serde::Serialize;
use std::fmt;

/// A firmware version word. Ordered as the firmware orders it: as a plain
/// `u32`, which is branch, then major, then minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FwVersion(pub u32);

/// The first release with per-chain QSPI GPTs (`PcdGptIsPerBootChain`), so the
/// first whose capsule code can change the inactive chain's QSPI layout
/// (edk2-nvidia `r35.5.0-updates`; NVIDIA allows no JetPack 6 OTA from older).
pub const R35_5: FwVersion = FwVersion::new(35, 5, 0);

/// What the firmware reports for a chain whose version it could not read
/// (`MAX_UINT32` in `TegraFmp.c`).
pub const UNKNOWN_WORD: u32 = u32::MAX;

/// Why a version text is not `[R]BRANCH.MAJOR[.MINOR]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("firmware version '{0}' is not BRANCH.MAJOR[.MINOR] with each part 0-255 (e.g. 36.4.3)")]
pub struct FwVersionParseError(pub String);

impl FwVersion {
    /// `branch.major.minor`, e.g. `new(36, 4, 3)`.
    pub const fn new(branch: u8, major: u8, minor: u8) -> FwVersion {
        FwVersion(((branch as u32) << 16) | ((major as u32) << 8) | minor as u32)
    }

    /// The L4T branch (`35`, `36`).
    pub fn branch(self) -> u32 {
        (self.0 >> 16) & 0xFF
    }

    /// The major release within the branch (the `4` of 36.4.3).
    pub fn major(self) -> u32 {
        (self.0 >> 8) & 0xFF
    }

    /// The minor release (the `3` of 36.4.3).
    pub fn minor(self) -> u32 {
        self.0 & 0xFF
    }

    /// True for the word the firmware uses for "not readable".
    pub fn is_unknown(self) -> bool {
        self.0 == UNKNOWN_WORD
    }

    /// Parses `36.4.3`, `R36.4.3`, `36.4` (minor 0) or a `0x` word.
    pub fn parse(text: &str) -> Result<FwVersion, FwVersionParseError> {
        let err = || FwVersionParseError(text.chars().take(40).collect());
        let t = text.trim();
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u32::from_str_radix(hex, 16)
                .map(FwVersion)
                .map_err(|_| err());
        }
        let t = t.strip_prefix(['R', 'r']).unwrap_or(t);
        let parts: Vec<&str> = t.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(err());
        }
        let mut n = [0u8; 3];
        for (slot, p) in n.iter_mut().zip(&parts) {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            *slot = p.parse().map_err(|_| err())?;
        }
        let [b, ma, mi] = n;
        Ok(FwVersion::new(b, ma, mi))
    }
}

impl fmt::Display for FwVersion {
    /// `36.4.3`; a word with bits above the branch set, or the "unknown"
    /// word, is shown in hex as well so nothing is hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unknown() {
            return f.write_str("unknown (0xffffffff)");
        }
        write!(f, "{}.{}.{}", self.branch(), self.major(), self.minor())?;
        if self.0 >> 24 != 0 {
            write!(f, " ({:#010x})", self.0)?;
        }
        Ok(())
    }
}

impl Serialize for FwVersion {
    /// As the raw word, so JSON consumers compare numbers; the text is
    /// written beside it by the callers that show it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example() {
        let v = FwVersion::new(36, 4, 3);
        assert_eq!(v.0, 0x0024_0403);
        assert_eq!(v.to_string(), "36.4.3");
        assert_eq!((v.branch(), v.major(), v.minor()), (36, 4, 3));
        assert_eq!(R35_5.0, 0x0023_0500);
    }

    #[test]
    fn parse_and_format_round_trip() {
        for (text, word) in [
            ("36.4.3", 0x0024_0403),
            ("R35.5.0", 0x0023_0500),
            ("r35.6", 0x0023_0600),
            ("0x00240403", 0x0024_0403),
            (" 35.2.1 ", 0x0023_0201),
        ] {
            let v = FwVersion::parse(text).unwrap();
            assert_eq!(v.0, word, "{text}");
            assert_eq!(FwVersion::parse(&v.to_string()).unwrap(), v);
        }
        for bad in [
            "", "36", "36.4.3.1", "36..3", "36.256.0", "a.b.c", "36.-4.3", "0xzz",
        ] {
            assert!(FwVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering_is_the_firmwares() {
        assert!(FwVersion::new(35, 4, 1) < R35_5);
        assert!(FwVersion::new(35, 5, 0) >= R35_5);
        assert!(FwVersion::new(36, 0, 0) > FwVersion::new(35, 6, 4));
        assert!(FwVersion::new(36, 4, 3) < FwVersion::new(36, 4, 4));
    }

    #[test]
    fn odd_words_are_shown_whole() {
        assert_eq!(FwVersion(u32::MAX).to_string(), "unknown (0xffffffff)");
        assert_eq!(FwVersion(0x0124_0403).to_string(), "36.4.3 (0x01240403)");
    }
}
