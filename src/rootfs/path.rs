//! Member names from an archive → paths that stay inside the destination.
//!
//! Pure and lexical: the filesystem side (symlinks met on the way) is checked
//! by [`super::extract`] when it resolves the parent directory. The rules:
//!
//! * a `..` component anywhere is refused (GNU tar skips such members with a
//!   warning; we fail, since a rootfs has none and skipping loses data);
//! * a leading `/` is stripped, as GNU tar does ("Removing leading `/' from
//!   member names"); the caller reports it once;
//! * empty and `.` components are dropped, so `./etc//passwd` is `etc/passwd`
//!   and `./` is the destination itself.
#![deny(clippy::indexing_slicing)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A member name made safe: components below the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    /// The relative path (empty for the destination itself).
    pub rel: PathBuf,
    /// True if a leading `/` was removed.
    pub stripped_root: bool,
}

impl SafePath {
    /// True for the destination directory itself (`.` or `./`).
    pub fn is_root(&self) -> bool {
        self.rel.as_os_str().is_empty()
    }
}

/// Why a member name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The name is empty.
    #[error("empty member name")]
    Empty,
    /// The name climbs out with `..`.
    #[error("member name contains '..'")]
    DotDot,
}

/// Makes an archive member name safe to join to a destination.
pub fn sanitize(raw: &[u8]) -> Result<SafePath, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let stripped_root = raw.first() == Some(&b'/');
    let mut rel = PathBuf::new();
    for comp in raw.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            c => rel.push(OsStr::from_bytes(c)),
        }
    }
    Ok(SafePath { rel, stripped_root })
}

/// Lexically resolves a symlink `target` found at `link` (a path relative to
/// the destination) and returns the destination-relative path it points to,
/// or `None` when it leaves the destination: an absolute target, or one whose
/// `..` climbs above the top.
pub fn resolve_link(link: &Path, target: &[u8]) -> Option<PathBuf> {
    if target.first() == Some(&b'/') || target.is_empty() {
        return None;
    }
    let mut out: Vec<&OsStr> = link.parent()?.iter().collect();
    for comp in target.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Some(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (String, bool) {
        let p = sanitize(raw.as_bytes()).unwrap();
        (p.rel.to_string_lossy().into_owned(), p.stripped_root)
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(ok("./etc//passwd"), ("etc/passwd".into(), false));
        assert_eq!(ok("./"), ("".into(), false));
        assert_eq!(ok("."), ("".into(), false));
        assert_eq!(ok("usr/bin/"), ("usr/bin".into(), false));
        assert_eq!(ok("/etc/shadow"), ("etc/shadow".into(), true));
        assert_eq!(ok("//x"), ("x".into(), true));
        assert_eq!(ok("a/..b/c.."), ("a/..b/c..".into(), false));
    }

    #[test]
    fn dot_dot_and_empty_are_refused() {
        for bad in ["..", "../x", "a/../b", "a/..", "/../etc", "./.."] {
            assert_eq!(sanitize(bad.as_bytes()), Err(PathError::DotDot), "{bad}");
        }
        assert_eq!(sanitize(b""), Err(PathError::Empty));
    }

    #[test]
    fn links_resolve_inside_or_not_at_all() {
        let r = |link: &str, t: &str| {
            resolve_link(Path::new(link), t.as_bytes()).map(|p| p.to_string_lossy().into_owned())
        };
        assert_eq!(r("lib", "usr/lib").as_deref(), Some("usr/lib"));
        assert_eq!(r("a/b/l", "../c").as_deref(), Some("a/c"));
        assert_eq!(r("a/l", "../../etc"), None);
        assert_eq!(r("l", ".."), None);
        assert_eq!(r("l", "/etc"), None);
        assert_eq!(r("a/l", "./x/./y").as_deref(), Some("a/x/y"));
    }

    proptest::proptest! {
        #[test]
        fn sanitised_paths_never_climb(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(p) = sanitize(&raw) {
                proptest::prop_assert!(p.rel.is_relative());
                proptest::prop_assert!(p.rel.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
    }
}
