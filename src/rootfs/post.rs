//! After a slot is unpacked: refresh `/etc/timestamp`, and name what was
//! installed for the final `PASS:` line.
//!
//! Files are looked up inside the slot with [`resolve_in_tree`]: symlinks are
//! followed as the installed system would see them (`/etc/os-release` is
//! usually `../usr/lib/os-release`), never out to the installer's own files.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Symlinks followed while resolving one path.
const MAX_FOLLOWS: u32 = 40;
/// Largest metadata file read (os-release and the like are tiny).
const MAX_META_FILE: u64 = 64 << 10;

/// Resolves `rel` inside `root` as if `root` were `/` (chroot semantics:
/// absolute symlinks start at `root`, `..` stops at `root`). Returns the
/// host path; the last component need not exist.
pub fn resolve_in_tree(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut todo: Vec<PathBuf> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .rev()
        .collect();
    let mut cur: Vec<PathBuf> = Vec::new();
    let mut follows = 0;
    while let Some(c) = todo.pop() {
        if c.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        let candidate: PathBuf = root.join(cur.iter().collect::<PathBuf>()).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                follows += 1;
                if follows > MAX_FOLLOWS {
                    anyhow::bail!(
                        "too many symlinks resolving {} in {}",
                        rel.display(),
                        root.display()
                    );
                }
                let target = fs::read_link(&candidate)
                    .with_context(|| format!("reading symlink {}", candidate.display()))?;
                if target.is_absolute() {
                    cur.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push(PathBuf::from(n)),
                        Component::ParentDir => todo.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => cur.push(c),
        }
    }
    Ok(root.join(cur.iter().collect::<PathBuf>()))
}

fn read_small(root: &Path, rel: &str) -> Option<String> {
    let path = resolve_in_tree(root, Path::new(rel)).ok()?;
    let f = fs::File::open(path).ok()?;
    std::io::read_to_string(std::io::Read::take(f, MAX_META_FILE)).ok()
}

/// Writes the current UTC time (`%Y%m%d%H%M%S`) to `etc/timestamp` in the
/// slot when that file exists, as the old installer did (systemd's and
/// fake-hwclock's boot-time floor). Returns whether it was there.
pub fn refresh_timestamp(root: &Path) -> Result<bool> {
    refresh_timestamp_at(root, SystemTime::now())
}

/// [`refresh_timestamp`] with a given time (tests).
pub fn refresh_timestamp_at(root: &Path, now: SystemTime) -> Result<bool> {
    let path = resolve_in_tree(root, Path::new("etc/timestamp"))?;
    match fs::symlink_metadata(&path) {
        Ok(md) if md.is_file() => {}
        _ => return Ok(false),
    }
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", utc_stamp(secs)).with_context(|| format!("writing {}", path.display()))?;
    // The file's time is the stamp's, not the moment of writing, so slots
    // refreshed with the same `now` stay identical.
    f.set_modified(now)
        .with_context(|| format!("setting the time of {}", path.display()))?;
    Ok(true)
}

/// `%Y%m%d%H%M%S` of a Unix time, in UTC.
pub fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What the slot calls itself: `artifact_name` from
/// `etc/mender/artifact_info`, else `PRETTY_NAME` from `etc/os-release`,
/// else its `NAME VERSION`.
pub fn artifact_name(root: &Path) -> Option<String> {
    if let Some(text) = read_small(root, "etc/mender/artifact_info") {
        if let Some(v) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("artifact_name="))
        {
            let v = unquote(v);
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    let text =
        read_small(root, "etc/os-release").or_else(|| read_small(root, "usr/lib/os-release"))?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(unquote)
            .filter(|v| !v.is_empty())
    };
    get("PRETTY_NAME").or_else(|| match (get("NAME"), get("VERSION")) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n,
    })
}

/// Removes shell quoting from an os-release value.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out.chars().filter(|c| !c.is_control()).collect()
}

/// Where systemd keeps the machine's identity.
pub const MACHINE_ID: &str = "etc/machine-id";

/// A machine-id as systemd writes it: 32 hex digits, then a newline or
/// nothing. `uninitialized`, an empty file, all zeros or anything else: none.
pub fn parse_machine_id(text: &[u8]) -> Option<[u8; 16]> {
    let hex = text.strip_suffix(b"\n").unwrap_or(text);
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        *id.get_mut(i)? = u8::from_str_radix(digits, 16).ok()?;
    }
    (id != [0; 16]).then_some(id)
}

/// The machine-id of the tree at `root`, read without following a symlink.
pub fn read_machine_id(root: &Path) -> Option<[u8; 16]> {
    let p = root.join(MACHINE_ID);
    if fs::symlink_metadata(&p).ok()?.file_type().is_symlink() {
        return None;
    }
    parse_machine_id(&fs::read(p).ok()?)
}

/// Gives the tree at `root` the machine-id `id` when it has none (no file,
/// an empty one, `uninitialized`), as the old installer carried the board's
/// identity into a new rootfs; a rootfs that brings its own id, or makes
/// the file a symlink, keeps it. Returns whether it wrote.
pub fn carry_machine_id(root: &Path, id: &[u8; 16]) -> Result<bool> {
    let p = root.join(MACHINE_ID);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_symlink() || !m.is_file() => return Ok(false),
        Ok(_) if read_machine_id(root).is_some() => return Ok(false),
        _ => {}
    }
    if !root.join("etc").is_dir() {
        return Ok(false);
    }
    let text: String = crate::bytes::hex(id) + "\n";
    write_synced(&p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    Ok(true)
}

/// Writes a file (replacing it), mode 0444 as systemd leaves it, and
/// flushes it.
fn write_synced(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(p);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(p)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {

    #[test]
    fn machine_ids_as_systemd_writes_them() {
        let id = parse_machine_id(b"0123456789abcdef0123456789ABCDEF\n").unwrap();
        assert_eq!(id[0], 0x01);
        assert_eq!(id[15], 0xef);
        assert!(parse_machine_id(b"0123456789abcdef0123456789abcdef").is_some());
        for bad in [
            &b""[..],
            b"uninitialized\n",
            b"0123",
            &[b'0'; 32],
            b"0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(parse_machine_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_machine_id_is_carried_only_where_there_is_none() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let id = [0x42u8; 16];
        assert!(
            !carry_machine_id(root, &id).unwrap(),
            "no /etc: not a rootfs"
        );
        fs::create_dir(root.join("etc")).unwrap();
        assert!(carry_machine_id(root, &id).unwrap());
        assert_eq!(read_machine_id(root), Some(id));
        assert_eq!(
            fs::read_to_string(root.join(MACHINE_ID)).unwrap(),
            "42".repeat(16) + "\n"
        );
        // Its own id stays.
        assert!(!carry_machine_id(root, &[7; 16]).unwrap());
        assert_eq!(read_machine_id(root), Some(id));
        // `uninitialized` (systemd's first-boot marker) is replaced.
        fs::remove_file(root.join(MACHINE_ID)).unwrap();
        fs::write(root.join(MACHINE_ID), "uninitialized\n").unwrap();
        assert!(carry_machine_id(root, &id).unwrap());
        // A symlink is the rootfs's choice.
        fs::remove_file(root.join(MACHINE_ID)).unwrap();
        std::os::unix::fs::symlink("/run/machine-id", root.join(MACHINE_ID)).unwrap();
        assert!(!carry_machine_id(root, &id).unwrap());
    }
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(0), "19700101000000");
        assert_eq!(utc_stamp(951_782_400), "20000229000000");
        assert_eq!(utc_stamp(1_795_316_426), "20261122030026");
        assert_eq!(utc_stamp(4_102_444_799), "20991231235959");
    }

    #[test]
    fn timestamp_is_refreshed_only_when_present() {
        let d = tempfile::tempdir().unwrap();
        assert!(!refresh_timestamp(d.path()).unwrap());
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/timestamp"), "20200101000000\n").unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_316_426);
        assert!(refresh_timestamp_at(d.path(), t).unwrap());
        assert_eq!(
            fs::read_to_string(d.path().join("etc/timestamp")).unwrap(),
            "20261122030026\n"
        );
    }

    #[test]
    fn artifact_names() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert_eq!(artifact_name(root), None);
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("etc/mender")).unwrap();
        fs::write(
            root.join("usr/lib/os-release"),
            "NAME=\"OE4T\"\nVERSION=\"5.0 (scarthgap)\"\n",
        )
        .unwrap();
        // Absolute link: must resolve inside the slot, not on the host.
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        assert_eq!(artifact_name(root).as_deref(), Some("OE4T 5.0 (scarthgap)"));
        fs::write(
            root.join("usr/lib/os-release"),
            "PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\nNAME=x\n",
        )
        .unwrap();
        assert_eq!(
            artifact_name(root).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        fs::write(
            root.join("etc/mender/artifact_info"),
            "artifact_name=demo-image-1.2\n",
        )
        .unwrap();
        assert_eq!(artifact_name(root).as_deref(), Some("demo-image-1.2"));
    }

    #[test]
    fn resolution_stays_in_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir(root.join("a")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("a/up")).unwrap();
        assert_eq!(
            resolve_in_tree(root, Path::new("a/up/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_tree(root, Path::new("loop/x")).is_err());
    }
}
