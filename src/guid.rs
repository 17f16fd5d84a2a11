//! GUIDs as the GPT stores them.
//!
//! A [`Guid`] is kept in its canonical text order (the order of the hex digits in
//! `8-4-4-4-12` form). On disk, GPT stores the first three fields little-endian
//! ("mixed-endian"); [`Guid::to_gpt_bytes`] and [`Guid::from_gpt_bytes`] convert.

#![deny(clippy::indexing_slicing)]

use std::fmt;

/// A 128-bit GUID in canonical (text) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid([u8; 16]);

/// Why a string is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a GUID (expected 8-4-4-4-12 hex digits)")]
pub struct GuidParseError {
    /// The text that failed to parse (truncated to 64 characters).
    pub text: String,
}

/// "Microsoft basic data", the type NVIDIA gives every user-area partition (sgdisk 0700).
pub const BASIC_DATA: Guid = Guid::from_fields(
    0xEBD0_A0A2,
    0xB9E5,
    0x4433,
    [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7],
);

/// EFI system partition (sgdisk EF00); R35 layouts use it for `esp`.
pub const EFI_SYSTEM: Guid = Guid::from_fields(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);

/// Linux filesystem data (sgdisk 8300). NVIDIA never writes it; listed for display.
pub const LINUX_FILESYSTEM: Guid = Guid::from_fields(
    0x0FC6_3DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

impl Guid {
    /// The all-zero GUID, which marks an unused GPT entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// Builds a GUID from its four text fields (`d1-d2-d3-d4[0..2]-d4[2..8]`).
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_be_bytes();
        let b = d2.to_be_bytes();
        let c = d3.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (either case, surrounding
    /// whitespace ignored).
    pub fn parse(text: &str) -> Result<Guid, GuidParseError> {
        let err = || GuidParseError {
            text: text.chars().take(64).collect(),
        };
        let t = text.trim().as_bytes();
        if t.len() != 36 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in t.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(err());
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(err()),
            };
            let byte = out.get_mut(nibbles / 2).ok_or_else(err)?;
            *byte = (*byte << 4) | v;
            nibbles += 1;
        }
        Ok(Guid(out))
    }

    /// A random version-4 GUID from the kernel's random source.
    pub fn random() -> std::io::Result<Guid> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(std::io::Error::from)?;
        b[6] = (b[6] & 0x0F) | 0x40;
        b[8] = (b[8] & 0x3F) | 0x80;
        Ok(Guid(b))
    }

    /// The GUID in canonical (text) byte order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Builds a GUID from canonical (text-order) bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 bytes as GPT stores them (first three fields little-endian).
    pub fn to_gpt_bytes(&self) -> [u8; 16] {
        swap_mixed_endian(self.0)
    }

    /// Reads the 16 bytes of a GPT GUID field.
    pub fn from_gpt_bytes(bytes: [u8; 16]) -> Guid {
        Guid(swap_mixed_endian(bytes))
    }

    /// True for the all-zero GUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The sgdisk-style short type code (`0700`, `EF00`, `8300`) for well-known
    /// partition types, if this is one.
    pub fn sgdisk_code(&self) -> Option<&'static str> {
        match *self {
            BASIC_DATA => Some("0700"),
            EFI_SYSTEM => Some("EF00"),
            LINUX_FILESYSTEM => Some("8300"),
            _ => None,
        }
    }
}

/// GPT's mixed-endian layout is its own inverse: swapping twice restores the input.
fn swap_mixed_endian(b: [u8; 16]) -> [u8; 16] {
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl std::str::FromStr for Guid {
    type Err = GuidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guid::parse(s)
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip_upper_case() {
        let g = Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        assert_eq!(g, EFI_SYSTEM);
        assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }

    #[test]
    fn gpt_bytes_are_mixed_endian() {
        // The bytes the UEFI spec gives for the basic-data type GUID on disk.
        assert_eq!(
            BASIC_DATA.to_gpt_bytes(),
            [
                0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44, 0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26,
                0x99, 0xc7
            ]
        );
        assert_eq!(Guid::from_gpt_bytes(BASIC_DATA.to_gpt_bytes()), BASIC_DATA);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "garbage",
            "APPUUID",
            "11111111-2222-3333-4444-55555555555",
            "11111111-2222-3333-4444-5555555555555",
            "11111111x2222-3333-4444-555555555555",
            "1111111g-2222-3333-4444-555555555555",
        ] {
            assert!(Guid::parse(bad).is_err(), "{bad}");
        }
        assert!(Guid::parse(" 11111111-2222-3333-4444-555555555555 ").is_ok());
    }

    #[test]
    fn random_guids_are_v4_and_distinct() {
        let a = Guid::random().unwrap();
        let b = Guid::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[6] >> 4, 4);
        assert_eq!(a.as_bytes()[8] >> 6, 0b10);
    }
}
