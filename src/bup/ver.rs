//! The `VER` partition of T210 boards and the version checks made before a
//! T210 update (docs/spec/bup-format.md §4.8).
//!
//! ```text
//! NV3
//! # R32 , REVISION: 7.3
//! BOARDID=3448 BOARDSKU=0000 FAB=200
//! 20230102030405
//! BYTES:76 CRC32:4004081057
//! ```
//!
//! The last line holds the length and the POSIX `cksum` of the lines before
//! it. `VER_b` is written first and `VER` last, so two different versions in
//! them mean an update was interrupted.

#![deny(clippy::indexing_slicing)]

use serde::Serialize;

/// What could be read from a VER partition. Fields are filled in order and
/// reading stops at the first problem, so `bsp` can be set while the rest is
/// not (REF counts `bsp != 0` as "has a version").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerInfo {
    /// Format revision (`NV3` → 3).
    pub revision: u32,
    /// BSP version as `major << 16 | minor << 8 | maintenance`.
    pub bsp: u32,
    /// The product line (revision ≥ 2).
    pub product: Option<String>,
    /// The 14-digit build timestamp (revision ≥ 3).
    pub timestamp: Option<String>,
    /// The recorded CRC (`CRC32:` value).
    pub crc: u32,
    /// True when every line, the length and the checksum are right.
    pub valid: bool,
}

/// `major.minor.maintenance` of a BSP version word.
pub fn bsp_string(bsp: u32) -> String {
    format!("{}.{}.{}", bsp >> 16, (bsp >> 8) & 0xFF, bsp & 0xFF)
}

/// POSIX `cksum`: CRC-32 with polynomial 0x04C11DB7, MSB first, over the
/// data and then its length (least significant byte first, as many bytes
/// as it needs), complemented.
pub fn cksum(data: &[u8]) -> u32 {
    fn feed(crc: u32, b: u8) -> u32 {
        let mut c = crc ^ (u32::from(b) << 24);
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
        }
        c
    }
    let mut crc = data.iter().fold(0, |c, &b| feed(c, b));
    let mut n = data.len() as u64;
    while n != 0 {
        crc = feed(crc, (n & 0xFF) as u8);
        n >>= 8;
    }
    !crc
}

fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s.get(..end)?.parse().ok()?;
    Some((n, s.get(end..)?))
}

/// `# R<major> , REVISION: <minor>.<maintenance>`.
fn parse_release(line: &str) -> Option<u32> {
    let (major, rest) = number(line.strip_prefix("# R")?)?;
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let (minor, rest) = number(rest.strip_prefix("REVISION:")?.trim_start())?;
    let (maint, rest) = number(rest.strip_prefix('.')?)?;
    if !rest.trim().is_empty() || major > 0xFF || minor > 0xFF || maint > 0xFF {
        return None;
    }
    Some(major << 16 | minor << 8 | maint)
}

/// Reads a VER partition or payload entry (REF's `ver_extract_info`).
/// Anything after the `BYTES:` line is padding and ignored.
pub fn parse(data: &[u8]) -> VerInfo {
    let mut info = VerInfo::default();
    let mut pos = 0usize;
    let next_line = |pos: &mut usize| -> Option<String> {
        let rest = data.get(*pos..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(rest.get(..nl)?).ok()?.to_owned();
        *pos += nl + 1;
        Some(line)
    };
    let Some(rev) = next_line(&mut pos)
        .and_then(|l| l.strip_prefix("NV").and_then(|d| d.parse::<u32>().ok()))
        .filter(|&r| r < 10)
    else {
        return info;
    };
    info.revision = rev;
    let Some(bsp) = next_line(&mut pos).as_deref().and_then(parse_release) else {
        return info;
    };
    info.bsp = bsp;
    if rev >= 2 {
        match next_line(&mut pos).filter(|l| l.len() <= 255) {
            Some(p) => info.product = Some(p),
            None => return info,
        }
    }
    if rev >= 3 {
        match next_line(&mut pos).filter(|l| l.len() == 14 && l.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(t) => info.timestamp = Some(t),
            None => return info,
        }
    }
    let covered = pos;
    let Some(sums) = next_line(&mut pos) else {
        return info;
    };
    let parsed = sums
        .strip_prefix("BYTES:")
        .and_then(number)
        .and_then(|(n, rest)| {
            let (crc, tail) = rest.strip_prefix(" CRC32:").and_then(number)?;
            tail.is_empty().then_some((n, crc))
        });
    let Some((bytes, crc)) = parsed else {
        return info;
    };
    info.crc = crc;
    let head = data.get(..covered).unwrap_or(&[]);
    info.valid = bytes as usize == covered && cksum(head) == crc;
    info
}

/// Why a T210 update must not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The payload's own VER entry is not valid.
    #[error("the payload's VER entry is not a valid version record")]
    PayloadVersion,
    /// Both copies agree on a newer version than the payload's.
    #[error("current bootloader version is {current}; cannot roll back to {payload}")]
    Rollback {
        /// Installed version.
        current: String,
        /// Payload version.
        payload: String,
    },
    /// VER and VER_b are identical but the NVC copies differ.
    #[error("NVC partition mismatch: the NVC copies differ although VER and VER_b agree; reflash required")]
    NvcMismatch,
    /// Only VER is valid and it is newer than the payload.
    #[error("current bootloader version is {current}; cannot downgrade to {payload} (use --initialize to force)")]
    Downgrade {
        /// Installed version.
        current: String,
        /// Payload version.
        payload: String,
    },
    /// VER_b holds a version other than the payload's: an interrupted update
    /// of another version.
    #[error("previous update to {backup} was incomplete; update with that version first")]
    Incomplete {
        /// Version in VER_b.
        backup: String,
    },
    /// Neither copy holds a version.
    #[error("bootloader version partitions are corrupted; cannot apply update (use --initialize to force)")]
    Corrupted,
}

/// The version check REF makes before a T210 update
/// (`invalid_version_or_downgrade`). `nvc_copies_equal` is `None` when the
/// NVC pair is not both being written. Returns a warning to show, if any.
///
/// Deviation from REF (its own comments' intent, docs/spec/bup-format.md §4.8 QUIRK):
/// resuming an interrupted update with the same payload (VER_b already has
/// the payload's version) and an update when only VER is valid and not
/// newer are allowed; REF refuses both unless forced.
pub fn t210_check(
    payload: &VerInfo,
    current: &VerInfo,
    backup: &VerInfo,
    nvc_copies_equal: Option<bool>,
    force: bool,
) -> Result<Option<String>, VersionError> {
    if !payload.valid {
        return Err(VersionError::PayloadVersion);
    }
    let (cur, back, new) = (current.bsp, backup.bsp, payload.bsp);
    if cur != 0 && cur == back {
        if cur > new {
            return Err(VersionError::Rollback {
                current: bsp_string(cur),
                payload: bsp_string(new),
            });
        }
        if current.crc == backup.crc && nvc_copies_equal != Some(true) {
            return Err(VersionError::NvcMismatch);
        }
        return Ok(None);
    }
    if back == 0 && cur != 0 {
        if cur <= new {
            return Ok(None);
        }
        if force {
            return Ok(Some(format!(
                "downgrading bootloader from {} to {}",
                bsp_string(cur),
                bsp_string(new)
            )));
        }
        return Err(VersionError::Downgrade {
            current: bsp_string(cur),
            payload: bsp_string(new),
        });
    }
    if back != 0 {
        if back == new {
            return Ok(None);
        }
        return Err(VersionError::Incomplete {
            backup: bsp_string(back),
        });
    }
    if force {
        Ok(Some(
            "bootloader version partitions were corrupted; writing them anew".into(),
        ))
    } else {
        Err(VersionError::Corrupted)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    pub const VECTOR: &str = "NV3\n# R32 , REVISION: 7.3\nBOARDID=3448 BOARDSKU=0000 FAB=200\n20230102030405\nBYTES:76 CRC32:4004081057\n";

    /// A valid VER record for release R32.minor.maint.
    pub fn ver(minor: u32, maint: u32) -> Vec<u8> {
        let head = format!(
            "NV3\n# R32 , REVISION: {minor}.{maint}\nBOARDID=3448 BOARDSKU=0000 FAB=200\n20230102030405\n"
        );
        format!(
            "{head}BYTES:{} CRC32:{}\n",
            head.len(),
            cksum(head.as_bytes())
        )
        .into_bytes()
    }

    #[test]
    fn cksum_of_the_documented_vector() {
        let head = &VECTOR.as_bytes()[..76];
        assert_eq!(cksum(head), 4_004_081_057);
        // `printf 123456789 | cksum`
        assert_eq!(cksum(b"123456789"), 930_766_865);
        assert_eq!(cksum(b""), 4_294_967_295);
    }

    #[test]
    fn the_documented_vector_parses() {
        let mut padded = VECTOR.as_bytes().to_vec();
        padded.resize(32768, 0);
        let v = parse(&padded);
        assert!(v.valid);
        assert_eq!(v.revision, 3);
        assert_eq!(v.bsp, 32 << 16 | 7 << 8 | 3);
        assert_eq!(bsp_string(v.bsp), "32.7.3");
        assert_eq!(
            v.product.as_deref(),
            Some("BOARDID=3448 BOARDSKU=0000 FAB=200")
        );
        assert_eq!(v.timestamp.as_deref(), Some("20230102030405"));
        assert_eq!(v.crc, 4_004_081_057);
        assert_eq!(parse(&ver(7, 3)), v);
    }

    #[test]
    fn partial_records_keep_what_was_read() {
        let bad_crc = VECTOR.replace("CRC32:4004081057", "CRC32:1");
        let v = parse(bad_crc.as_bytes());
        assert!(!v.valid);
        assert_eq!(bsp_string(v.bsp), "32.7.3");
        let bad_len = VECTOR.replace("BYTES:76", "BYTES:75");
        assert!(!parse(bad_len.as_bytes()).valid);
        let short_ts = VECTOR.replace("20230102030405", "2023");
        let v = parse(short_ts.as_bytes());
        assert!(!v.valid && v.bsp != 0 && v.timestamp.is_none());
        assert_eq!(parse(b"\0\0\0\0"), VerInfo::default());
        assert_eq!(parse(&[0xFF; 64]), VerInfo::default());
        assert_eq!(parse(b"NV3\n# R32 , REVISION: 7").bsp, 0);
    }

    #[test]
    fn version_matrix() {
        let v = |minor, maint| parse(&ver(minor, maint));
        let blank = VerInfo::default();
        let (old, new) = (v(6, 1), v(7, 3));
        // Equal copies, same or newer payload.
        assert_eq!(t210_check(&new, &old, &old, Some(true), false), Ok(None));
        // Rollback refused even when forced.
        assert!(matches!(
            t210_check(&old, &new, &new, Some(true), true),
            Err(VersionError::Rollback { .. })
        ));
        // Equal VER copies with differing NVC copies.
        assert_eq!(
            t210_check(&new, &old, &old, Some(false), false),
            Err(VersionError::NvcMismatch)
        );
        assert_eq!(
            t210_check(&new, &old, &old, None, false),
            Err(VersionError::NvcMismatch)
        );
        // Only VER valid: newer needs force, older or equal is fine (REF: refused).
        assert!(matches!(
            t210_check(&old, &new, &blank, None, false),
            Err(VersionError::Downgrade { .. })
        ));
        assert!(t210_check(&old, &new, &blank, None, true)
            .unwrap()
            .is_some());
        assert_eq!(t210_check(&new, &old, &blank, None, false), Ok(None));
        // Interrupted update: VER_b has the payload's version (REF: refused
        // without force), or another one (refused even when forced).
        assert_eq!(t210_check(&new, &old, &new, None, false), Ok(None));
        assert_eq!(
            t210_check(&new, &old, &v(5, 0), None, true),
            Err(VersionError::Incomplete {
                backup: "32.5.0".into()
            })
        );
        // Nothing readable: only with force.
        assert_eq!(
            t210_check(&new, &blank, &blank, None, false),
            Err(VersionError::Corrupted)
        );
        assert!(t210_check(&new, &blank, &blank, None, true)
            .unwrap()
            .is_some());
        // A corrupt payload VER is refused first.
        assert_eq!(
            t210_check(&blank, &old, &old, Some(true), true),
            Err(VersionError::PayloadVersion)
        );
    }

    #[test]
    fn parse_never_panics() {
        use proptest::prelude::*;
        proptest!(|(flips in proptest::collection::vec((0usize..100, any::<u8>()), 0..6), cut in 0usize..110)| {
            let mut b = VECTOR.as_bytes().to_vec();
            for (i, x) in flips { if let Some(c) = b.get_mut(i) { *c = x; } }
            b.truncate(cut);
            let _ = parse(&b);
        });
    }
}
