//! Small helpers over byte slices shared by the subsystems.

/// Lower-case hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serialises bytes as a lower-case hex string (for `#[serde(serialize_with)]`).
pub fn serialize_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

/// The `N` bytes at `off`, or `None` when `b` is too short.
pub fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The little-endian `u16` at `off`, or `None` when `b` is too short.
pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    array_at(b, off).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `off`, or `None` when `b` is too short.
pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    array_at(b, off).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `off`, or `None` when `b` is too short.
pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    array_at(b, off).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0a, 0xff, 0x7B]), "000aff7b");
    }

    #[test]
    fn little_endian_readers_are_checked() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le16(&b, 7), Some(0x0908));
        assert_eq!(le32(&b, 0), Some(0x0403_0201));
        assert_eq!(le64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(le16(&b, 8), None);
        assert_eq!(le32(&b, 6), None);
        assert_eq!(le64(&b, 2), None);
        assert_eq!(le32(&b, usize::MAX), None);
    }
}
