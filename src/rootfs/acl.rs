//! POSIX ACL text (as GNU tar stores it in `SCHILY.acl.access/default`) →
//! the binary value of the `system.posix_acl_access/default` xattrs.
//!
//! The text is libacl's `acl_to_text` form: entries `tag:qualifier:perms`
//! separated by commas or newlines, `#` comments (GNU tar writes
//! `#effective:r--` on some entries). Tags may be abbreviated (`u`, `g`, `m`,
//! `o`). Qualifiers are numeric ids or names; names are looked up by the
//! caller (the target's `/etc/passwd` first: see [`super::extract`]).
//!
//! The binary form is the kernel's `posix_acl_xattr_header` (version 2)
//! followed by `posix_acl_xattr_entry {u16 tag; u16 perm; u32 id}` records,
//! little-endian, sorted by tag then id as `posix_acl_valid` requires.
#![deny(clippy::indexing_slicing)]

/// `POSIX_ACL_XATTR_VERSION` (include/uapi/linux/posix_acl_xattr.h).
const XATTR_VERSION: u32 = 2;
/// `ACL_UNDEFINED_ID`.
const UNDEFINED_ID: u32 = u32::MAX;

/// ACL entry tags (include/uapi/linux/posix_acl.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u16)]
pub enum Tag {
    /// `ACL_USER_OBJ`.
    UserObj = 0x01,
    /// `ACL_USER`.
    User = 0x02,
    /// `ACL_GROUP_OBJ`.
    GroupObj = 0x04,
    /// `ACL_GROUP`.
    Group = 0x08,
    /// `ACL_MASK`.
    Mask = 0x10,
    /// `ACL_OTHER`.
    Other = 0x20,
}

/// A user or group named in an ACL that must be mapped to an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name<'a> {
    /// A user name.
    User(&'a str),
    /// A group name.
    Group(&'a str),
}

/// Converts ACL text to the xattr value; `lookup` maps names to ids.
pub fn text_to_xattr(
    text: &str,
    mut lookup: impl FnMut(Name<'_>) -> Option<u32>,
) -> Result<Vec<u8>, String> {
    let mut entries: Vec<(Tag, u32, u16)> = Vec::new();
    for raw in text.split([',', '\n']) {
        let entry = raw.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let mut parts = entry.split(':');
        let (tag, qual, perms) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(q), Some(p), None) => (t.trim(), q.trim(), p.trim()),
            // `other::r--` has three fields, `other:r--` two: accept both.
            (Some(t), Some(p), None, None) if matches!(t.trim(), "o" | "other" | "m" | "mask") => {
                (t.trim(), "", p.trim())
            }
            _ => return Err(format!("ACL entry {entry:?} is not tag:qualifier:perms")),
        };
        let perm =
            parse_perms(perms).ok_or_else(|| format!("ACL entry {entry:?}: bad permissions"))?;
        let (tag, id) = match (tag, qual.is_empty()) {
            ("u" | "user", true) => (Tag::UserObj, UNDEFINED_ID),
            ("g" | "group", true) => (Tag::GroupObj, UNDEFINED_ID),
            ("m" | "mask", true) => (Tag::Mask, UNDEFINED_ID),
            ("o" | "other", true) => (Tag::Other, UNDEFINED_ID),
            ("u" | "user", false) => (Tag::User, id_of(qual, Name::User(qual), &mut lookup)?),
            ("g" | "group", false) => (Tag::Group, id_of(qual, Name::Group(qual), &mut lookup)?),
            _ => {
                return Err(format!(
                    "ACL entry {entry:?}: unknown tag or misplaced qualifier"
                ))
            }
        };
        if entries.iter().any(|&(t, i, _)| t == tag && i == id) {
            return Err(format!("ACL entry {entry:?} appears twice"));
        }
        entries.push((tag, id, perm));
    }
    for needed in [Tag::UserObj, Tag::GroupObj, Tag::Other] {
        if !entries.iter().any(|e| e.0 == needed) {
            return Err(format!("ACL {text:?} lacks a {needed:?} entry"));
        }
    }
    let named = entries
        .iter()
        .any(|e| matches!(e.0, Tag::User | Tag::Group));
    if named && !entries.iter().any(|e| e.0 == Tag::Mask) {
        return Err(format!("ACL {text:?} has named entries but no mask"));
    }
    entries.sort_by_key(|&(t, i, _)| (t, i));
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&XATTR_VERSION.to_le_bytes());
    for (tag, id, perm) in entries {
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

fn id_of(
    qual: &str,
    name: Name<'_>,
    lookup: &mut impl FnMut(Name<'_>) -> Option<u32>,
) -> Result<u32, String> {
    if let Ok(id) = qual.parse::<u32>() {
        return Ok(id);
    }
    lookup(name.clone()).ok_or_else(|| match name {
        Name::User(n) => format!("ACL names user {n:?}, which is unknown"),
        Name::Group(n) => format!("ACL names group {n:?}, which is unknown"),
    })
}

/// `rwx`, `r-x`, `rw`, `-`: the letters in any order, dashes ignored.
fn parse_perms(p: &str) -> Option<u16> {
    let mut perm = 0u16;
    for c in p.chars() {
        perm |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => return None,
        };
    }
    Some(perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: Name<'_>) -> Option<u32> {
        None
    }

    #[test]
    fn access_acl_with_named_entries() {
        let text = "user::rw-\nuser:cloudsdk:rw-\ngroup::r--\nmask::rw-\nother::r--\n";
        let bin = text_to_xattr(text, |n| (n == Name::User("cloudsdk")).then_some(1000)).unwrap();
        let want: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            &[1, 0, 6, 0],
            &u32::MAX.to_le_bytes(),
            &[2, 0, 6, 0],
            &1000u32.to_le_bytes(),
            &[4, 0, 4, 0],
            &u32::MAX.to_le_bytes(),
            &[0x10, 0, 6, 0],
            &u32::MAX.to_le_bytes(),
            &[0x20, 0, 4, 0],
            &u32::MAX.to_le_bytes(),
        ]
        .concat();
        assert_eq!(bin, want);
    }

    #[test]
    fn order_comments_abbreviations_and_numeric_ids() {
        let a =
            text_to_xattr("o::r-x,g:100:r-x #effective:r-x,m::rwx,u::rwx,g::r-x", none).unwrap();
        let b = text_to_xattr(
            "user::rwx,group::r-x,group:100:r-x,mask::rwx,other::r-x",
            none,
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_acls_are_refused() {
        assert!(text_to_xattr("user::rwx,group::r-x", none)
            .unwrap_err()
            .contains("Other"));
        assert!(text_to_xattr("user::rwx,user:5:r,group::r,other::r", none)
            .unwrap_err()
            .contains("mask"));
        assert!(text_to_xattr("user::rwz,group::r,other::r", none).is_err());
        assert!(text_to_xattr("u::r,g::r,o::r,u:nobody9:r,m::r", none)
            .unwrap_err()
            .contains("nobody9"));
        assert!(text_to_xattr("u::r,u::r,g::r,o::r", none)
            .unwrap_err()
            .contains("twice"));
        assert!(text_to_xattr("bogus:1:2:3", none).is_err());
    }
}
