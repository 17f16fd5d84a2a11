//! The persistent install report: the summary of a finished install, as
//! JSON, in the system it installed (`/var/log/sysinstall/install.json` of
//! each slot this install wrote) and, after an initial install, in LOGS
//! when the layout has one (`sysinstall/install.json`: LOGS is the
//! installed system's `/var/log`), so that its first boot can tell what was
//! installed. An update leaves LOGS alone: it changes only the inactive slot.
//!
//! Written once every partition is, before the journal is cleared; a power
//! cut in between writes it again. Best effort: a report that cannot be
//! written is a warning, the install itself is done. The slots keep their
//! completion marker (mounting rewrites "last mounted", which is put back)
//! and the tarball's directory times (only the report is new).

use super::journal::InstallMode;
use super::preflight::Preflight;
use super::{node, report::Outcome, FsRole, Summary};
use crate::disk::PartitionNode;
use crate::events::{Events, Level};
use crate::sys::{blockdev, mkfs, mount::Mount};
use anyhow::Context as _;
use std::fs::{self, FileTimes};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the report goes in a slot.
pub const SLOT_PATH: &str = "var/log/sysinstall/install.json";
/// Where it goes in LOGS.
pub const LOGS_PATH: &str = "sysinstall/install.json";

/// The report: the summary as it stands after the last write (`result`
/// pass, exit 0, the seconds so far), with this sysinstall's version and
/// the time it was written (Unix seconds).
pub fn document(summary: &Summary, elapsed: f64, now_unix: u64) -> serde_json::Value {
    let mut s = summary.clone();
    s.result = Outcome::Pass;
    s.exit = crate::exit::SUCCESS;
    s.duration = elapsed;
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("sysinstall".into(), crate::cli::VERSION.into());
        o.insert("finished_unix".into(), now_unix.into());
    }
    v
}

/// Writes the report into each slot this install wrote (or an earlier run
/// of it finished) and into LOGS.
pub fn write(pre: &Preflight, nodes: &[PartitionNode], summary: &Summary, events: &Events) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let doc = document(summary, events.elapsed(), now);
    let Ok(text) = serde_json::to_string_pretty(&doc) else {
        return;
    };
    let written = |name: &str| {
        summary.slots.iter().any(|(n, _)| n == name) || summary.resumed.iter().any(|n| n == name)
    };
    for f in &pre.fs {
        let rel = match f.role {
            FsRole::Slot(_) if written(&f.name) => SLOT_PATH,
            // An update changes nothing but the inactive slot (and its
            // boot partitions): LOGS only gets the report of an initial
            // install, and not when an image filled it (`--image LOGS=`).
            _ if f.name == "LOGS"
                && pre.decision.mode == InstallMode::Initial
                && !summary.images.iter().any(|(n, _)| *n == f.name) =>
            {
                LOGS_PATH
            }
            _ => continue,
        };
        let dev = node(&pre.disk, nodes, f.number);
        let mnt = pre.rundir.join("mnt").join(&f.name);
        if let Err(e) = write_into(&dev, &mnt, rel, &text) {
            events.message(
                Level::Warn,
                format!("writing the install report into {}: {e:#}", f.name),
            );
        }
    }
}

/// Mounts `dev`, writes the report, unmounts, puts "last mounted" back.
fn write_into(dev: &Path, mnt: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let head = blockdev::read_head(dev, crate::probe::PROBE_BYTES)?;
    let marker = crate::probe::identify(&head)
        .ext()
        .map(|sb| sb.last_mounted.clone())
        .unwrap_or_default();
    let m = Mount::ext4(dev, mnt, false)?;
    let written = put(m.path(), rel, text);
    m.unmount()?;
    mkfs::set_last_mounted(dev, &marker)?;
    written
}

/// Writes `text` and a newline to `root/rel` (directories made as needed,
/// 0755), then gives the nearest directory that was there its times back.
fn put(root: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let path = root.join(rel);
    let shown = path.display();
    let parent = path
        .parent()
        .with_context(|| format!("{shown} has no parent"))?;
    let existing = parent
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(root)
        .to_owned();
    let md = fs::metadata(&existing).with_context(|| format!("reading {}", existing.display()))?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, format!("{text}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
    let times = FileTimes::new()
        .set_accessed(md.accessed()?)
        .set_modified(md.modified()?);
    fs::File::open(&existing)
        .and_then(|d| d.set_times(times))
        .with_context(|| format!("restoring the times of {}", existing.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_summary_of_a_pass() {
        let mut s = Summary::new("/dev/mmcblk0".into());
        s.rootfs_sha256 = Some("ab".repeat(32));
        s.slots = vec![("APP".into(), format!("sha256:{}", "ab".repeat(32)))];
        s.resumed = vec!["DATA".into()];
        let v = document(&s, 12.5, 1_700_000_000);
        assert_eq!(v["result"], "pass");
        assert_eq!(v["exit"], 0);
        assert_eq!(v["duration"], 12.5);
        assert_eq!(v["rootfs_sha256"], "ab".repeat(32));
        assert_eq!(v["slots"][0][0], "APP");
        assert_eq!(v["resumed"][0], "DATA");
        assert_eq!(v["finished_unix"], 1_700_000_000u64);
        assert!(v["sysinstall"].as_str().unwrap().contains(" (built "));
    }

    #[test]
    fn put_keeps_the_times_of_the_directory_that_was_there() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("var/log");
        fs::create_dir_all(&log).unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(&log)
            .unwrap()
            .set_times(FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
        put(d.path(), SLOT_PATH, "{\"a\":1}").unwrap();
        let text = fs::read_to_string(d.path().join(SLOT_PATH)).unwrap();
        assert_eq!(text, "{\"a\":1}\n");
        assert_eq!(fs::metadata(&log).unwrap().modified().unwrap(), old);
        assert!(!d
            .path()
            .join("var/log/sysinstall/install.json.tmp")
            .exists());
    }
}
