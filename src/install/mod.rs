//! The install: what `sysinstall` (alone, or `sysinstall install`) does.
//!
//! ```text
//! preflight (nothing written; preflight.rs)         steps (in this order; steps.rs)
//!   target, layout placed for its real size          journal: "running"   (LBA 0 boot code)
//!   in use? current GPT → plan; journal; slots       GPT (initial, unless in place)
//!   decide: mode, slot, data, erased (decide.rs)     mkfs the filesystems not yet done
//!   rootfs: a local file is scanned once             unpack both slots from one stream
//!   payload checked for this board (payload.rs)      data (kept, restored, or unpacked)
//!   boot devices, DATA saved, data tarball           boot partitions (verified)
//!   the report (report.rs), confirmation             slot metadata  ← the bootloader switch
//!                                                    journal cleared
//! ```
//!
//! Modes: **initial** re-lays-out the disk (or keeps the layout when it is
//! already in place) and installs everything; **update** writes only the
//! slot the board does not run from and its boot partitions, then makes it
//! active. `auto` picks update when the layout is in place and the board has
//! an active slot with a root filesystem, else initial ([`decide`] has every
//! rule and its table of cases).
//!
//! Power cuts: every step is idempotent (the GPT and boot partitions by
//! comparison, filesystems by their completion marker), and [`journal`]
//! records the mode and what is being installed, so that running
//! `sysinstall` again resumes the interrupted install and redoes only what
//! was not finished. The bootloader is switched (slot metadata) only after
//! everything it will boot is written and verified.

mod crypt;
pub mod decide;
pub mod disk_image;
pub mod fit;
pub mod images;
pub mod install_log;
pub mod journal;
mod payload;
mod preflight;
pub mod report;
pub mod stage;
mod steps;
pub mod t234;

pub use decide::ModeRequest;
pub use payload::{BUP_INITIALIZE, BUP_UPDATE, MAX_BUP_BYTES};
pub use preflight::{KEEP_DATA_MEM_PERCENT, TOOLS};

use crate::bup::board::Slot;
use crate::disk::{DiskEnv, PartitionNode};
use crate::events::Events;
use crate::events::{Event, EventKind, Phase, Sink, Verdict};
use crate::exit::Changes;
use crate::failpoint;
use crate::layout::{self, Soc};
use crate::sys::{blockdev::Disk, board::SysRoot};
use journal::InstallMode;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Rootfs tarballs looked for when none is given, in order.
pub const DEFAULT_ROOTFS: &[&str] = &["/installer/image.tar.gz", "/installer/image.tar.zst"];
/// Data tarball used when present and none is given.
pub const DEFAULT_DATA: &str = "/installer/data.tar.gz";
/// Layouts looked for when neither `--layout` nor the site config names one:
/// ours, then the old tool's `partition_table` (which the Yocto class installs).
pub const DEFAULT_LAYOUTS: &[&str] = &[
    "/etc/sysinstall/layout.xml",
    "/usr/share/sysinstall/layout.xml",
    "/usr/share/tegra-sysinstall/partition_table",
];
/// The eMMC user area of a Jetson.
pub const DEFAULT_DEVICE: &str = "/dev/mmcblk0";
/// The NVMe disk of an Orin NX or Orin Nano.
pub const DEFAULT_NVME_DEVICE: &str = "/dev/nvme0n1";

/// The target when none is given: the NVMe disk when the layout's user
/// device is `nvme` or `external` (Orin NX/Nano layouts), else the eMMC (or
/// SD card) at `/dev/mmcblk0`. A layout that cannot be read here gives the
/// eMMC; the preflight then reports what is wrong with it.
pub fn default_device(layout: &std::path::Path) -> PathBuf {
    let nvme = std::fs::read_to_string(layout)
        .ok()
        .and_then(|text| layout::xml::parse(&text).ok())
        .is_some_and(|l| {
            layout::geometry::user_device(&l)
                .is_some_and(|d| d.kind == "nvme" || d.kind == "external")
        });
    PathBuf::from(if nvme {
        DEFAULT_NVME_DEVICE
    } else {
        DEFAULT_DEVICE
    })
}
/// Mount points and the extracted payload live here (tmpfs in the initramfs);
/// `SYSINSTALL_RUNDIR` overrides it.
pub const DEFAULT_RUNDIR: &str = "/run/sysinstall";

/// Everything the install needs, resolved by the caller from the command
/// line, the site configuration and the defaults.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Rootfs source.
    pub rootfs: String,
    /// Expected SHA-256 of the rootfs.
    pub rootfs_sha256: Option<String>,
    /// True when `rootfs` is a partition image for the slots (`--image APP=`).
    pub slot_image: bool,
    /// `--image NAME=SOURCE` for partitions other than the slots.
    pub images: Vec<(String, String)>,
    /// How http(s) and OCI sources are fetched (every source of the run).
    pub net: crate::rootfs::http::NetOptions,
    /// Data tarball source.
    pub data: Option<String>,
    /// Layout file.
    pub layout: PathBuf,
    /// Placeholder values (`--set NAME=VALUE`).
    pub set: Vec<(String, String)>,
    /// Target disk.
    pub device: PathBuf,
    /// Payload file, when given.
    pub bup: Option<PathBuf>,
    /// Boot devices, when given.
    pub boot_devices: Vec<PathBuf>,
    /// SoC override.
    pub soc: Option<Soc>,
    /// Mode asked for.
    pub mode: ModeRequest,
    /// Keep DATA.
    pub keep_data: bool,
    /// Let an initial install erase a DATA that holds a filesystem.
    pub discard_data: bool,
    /// Carry no machine-id into the new slots.
    pub new_machine_id: bool,
    /// Stop after the preflight.
    pub dry_run: bool,
    /// Skip `e2fsck -p` after unpacking.
    pub no_fsck: bool,
    /// Leave the boot partitions (and the slot switch) alone.
    pub no_bootloader: bool,
    /// T234: the capsule to stage, when given.
    pub capsule: Option<PathBuf>,
    /// T234: stage no capsule (the firmware stays).
    pub no_capsule: bool,
    /// T234: the launcher for the ESP, when given.
    pub launcher: Option<PathBuf>,
    /// `--mkfs-options`: `[NAME:]ARGS`.
    pub mkfs_options: Vec<String>,
    /// `--verify-slots`: compare the two slot trees after unpacking.
    pub verify_slots: bool,
    /// Ignore an interrupted install's journal.
    pub restart: bool,
    /// TNSPEC override.
    pub tnspec: Option<String>,
    /// MACHINE override.
    pub machine: Option<String>,
    /// `--disk-image`: a whole-disk image instead of layout and rootfs.
    pub disk_image: Option<disk_image::DiskImage>,
    /// `--no-bmap`: no bmap is looked for beside a local image.
    pub no_bmap: bool,
    /// The key of the `crypt-` partitions.
    pub luks_key: LuksKey,
    /// Where /proc, /sys and board.conf are read.
    pub sysroot: SysRoot,
    /// Mount points and scratch files.
    pub rundir: PathBuf,
}

/// Where the key of the `crypt-` partitions' LUKS containers comes from.
#[derive(Debug, Clone, Default)]
pub enum LuksKey {
    /// None given.
    #[default]
    None,
    /// `--luks-key-file`: every byte of the file is the key.
    File(PathBuf),
    /// `--luks-key-command`: run once (`sh -c`) by the preflight; its
    /// standard output is the key (the hook for a key derived from the
    /// board's hardware on secure-boot units).
    Command(String),
}

impl InstallOptions {
    /// What the decision needs of the options.
    pub fn request(&self) -> decide::Request {
        decide::Request {
            mode: self.mode,
            restart: self.restart,
            keep_data: self.keep_data,
            discard_data: self.discard_data,
        }
    }

    /// Where the disk layer looks for /proc, /sys and /dev.
    pub fn disk_env(&self) -> DiskEnv {
        DiskEnv {
            sys_root: self.sysroot.path("/"),
            ..DiskEnv::default()
        }
    }
}

/// What a filesystem partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsRole {
    /// A root filesystem slot.
    Slot(Slot),
    /// DATA (or UDA when there is no DATA): user data.
    Data,
    /// Any other filesystem the install creates (LOGS, EXTRA, UDA).
    Scratch,
}

/// The partition holding slot `s`'s root filesystem.
pub fn slot_partition(s: Slot) -> &'static str {
    match s {
        Slot::A => "APP",
        Slot::B => "APP_b",
    }
}

/// A filesystem partition of the layout.
#[derive(Debug, Clone, Serialize)]
pub struct Fs {
    /// GPT partition name: `APP`, or `crypt-APP` for an encrypted one.
    pub name: String,
    /// GPT number.
    pub number: u32,
    /// Size in bytes the filesystem gets (the partition's, less the LUKS2
    /// header when it is encrypted).
    pub size: u64,
    /// What it is for.
    pub role: FsRole,
    /// In a LUKS2 container (the partition is named `crypt-NAME`).
    pub crypt: bool,
}

/// Prefix of an encrypted partition's name (`crypt-APP`), as NVIDIA's
/// secure-boot layouts spell it (docs/spec/flash-layout.md §9).
pub const CRYPT_PREFIX: &str = "crypt-";
/// Bytes a LUKS2 container keeps for its header: cryptsetup's default data
/// offset (16 MiB), which `luksFormat` uses for these containers.
pub const LUKS2_HEADER_BYTES: u64 = 16 << 20;

impl Fs {
    /// The name without `crypt-`: the ext4 label, and the role's name.
    pub fn label(&self) -> &str {
        self.name.strip_prefix(CRYPT_PREFIX).unwrap_or(&self.name)
    }

    /// How plans and events name it: `DATA`, or `APP (LUKS2 on crypt-APP)`.
    pub fn shown(&self) -> String {
        if self.crypt {
            format!("{} (LUKS2 on {})", self.label(), self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The filesystems a layout asks for: APP, APP_b, DATA, LOGS, EXTRA, UDA,
/// each plain or encrypted (`crypt-APP`: the role of APP, in a LUKS2
/// container); a layout with both spellings of one is refused.
pub fn filesystems(table: &layout::PartitionTable) -> anyhow::Result<Vec<Fs>> {
    let find = |name: &str| -> anyhow::Result<Option<(&layout::Partition, bool)>> {
        let crypt = format!("{CRYPT_PREFIX}{name}");
        match (table.by_name(name), table.by_name(&crypt)) {
            (Some(_), Some(_)) => report::refuse!(
                report::FailCode::LayoutInvalid,
                "the layout has both {name} and {crypt}: one partition cannot be both plain and encrypted"
            ),
            (Some(p), None) => Ok(Some((p, false))),
            (None, Some(p)) => Ok(Some((p, true))),
            (None, None) => Ok(None),
        }
    };
    let data_name = if find("DATA")?.is_some() {
        "DATA"
    } else {
        "UDA"
    };
    let mut out = Vec::new();
    for name in ["APP", "APP_b", "DATA", "LOGS", "EXTRA", "UDA"] {
        let Some((p, crypt)) = find(name)? else {
            continue;
        };
        let role = match name {
            "APP" => FsRole::Slot(Slot::A),
            "APP_b" => FsRole::Slot(Slot::B),
            n if n == data_name => FsRole::Data,
            _ => FsRole::Scratch,
        };
        let size = p.size_bytes(table.sector_size);
        out.push(Fs {
            name: p.name.clone(),
            number: p.number,
            size: if crypt {
                size.saturating_sub(LUKS2_HEADER_BYTES)
            } else {
                size
            },
            role,
            crypt,
        });
    }
    if !out.iter().any(|f| f.role == FsRole::Slot(Slot::A)) {
        report::refuse!(
            report::FailCode::LayoutInvalid,
            "the layout has no APP partition (nor crypt-APP) to install the rootfs into"
        );
    }
    Ok(out)
}

/// The layout's partition holding slot `s`'s root filesystem: `APP`,
/// `crypt-APP`, ...
pub fn slot_name(fs: &[Fs], s: Slot) -> &str {
    fs.iter()
        .find(|f| f.role == FsRole::Slot(s))
        .map_or(slot_partition(s), |f| f.name.as_str())
}

/// The node of partition `number`: the one the kernel made, else its name
/// after the disk's.
fn node(disk: &Disk, nodes: &[PartitionNode], number: u32) -> PathBuf {
    nodes
        .iter()
        .find(|n| n.number == number)
        .map(|n| n.path.clone())
        .unwrap_or_else(|| disk.partition_path(number))
}

/// The mke2fs arguments `--mkfs-options` gives partition `name`: those
/// without a `NAME:` prefix apply to every filesystem, the others to theirs.
pub fn mkfs_extra(options: &[String], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in options {
        let (target, args) = match o.split_once(':') {
            Some((t, a))
                if !t.is_empty() && !t.starts_with('-') && !t.contains(char::is_whitespace) =>
            {
                (Some(t), a)
            }
            _ => (None, o.as_str()),
        };
        if target.map_or(true, |t| t == name) {
            out.extend(args.split_whitespace().map(str::to_owned));
        }
    }
    out
}

/// The final record of a run (also the JSON summary).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How it ended.
    pub result: report::Outcome,
    /// Exit code class (filled in by the caller).
    pub exit: u8,
    /// "initial" or "update".
    pub mode: Option<InstallMode>,
    /// The disk.
    pub device: String,
    /// What was installed (artifact name), when known.
    pub artifact: Option<String>,
    /// SHA-256 of the rootfs tarball.
    pub rootfs_sha256: Option<String>,
    /// Per slot written: partition → `sha256:` of the verified stream it holds.
    pub slots: Vec<(String, String)>,
    /// Boot partitions written.
    pub boot_written: Vec<String>,
    /// Boot partitions already equal (skipped).
    pub boot_skipped: Vec<String>,
    /// Why the boot partitions were not touched, if they were not (or,
    /// on an Orin, what the firmware does next).
    pub boot_note: Option<String>,
    /// The board's machine-id was written into new slots that had none.
    pub machine_id_carried: bool,
    /// Orin: each UEFI variable operation and what it found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<String>,
    /// Partitions other than the slots written from an image: partition →
    /// `sha256:` of the image source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<(String, String)>,
    /// `--disk-image`: what was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_image: Option<disk_image::Report>,
    /// Seconds.
    pub duration: f64,
    /// What an earlier run had finished and this one kept.
    pub resumed: Vec<String>,
    /// Where the copy of DATA was kept while DATA was re-created
    /// (`--keep-data` where DATA moves).
    pub data_copy: Option<report::DataCopy>,
}

impl Summary {
    pub(crate) fn new(device: String) -> Summary {
        Summary {
            result: report::Outcome::Fail,
            exit: 0,
            mode: None,
            device,
            artifact: None,
            rootfs_sha256: None,
            slots: Vec::new(),
            boot_written: Vec::new(),
            boot_skipped: Vec::new(),
            boot_note: None,
            machine_id_carried: false,
            variables: Vec::new(),
            images: Vec::new(),
            disk_image: None,
            duration: 0.0,
            resumed: Vec::new(),
            data_copy: None,
        }
    }
}

/// Forwards progress events to the failpoints, so the interruption tests can
/// cut power in the middle of the unpack or between boot partitions.
struct FailpointSink;

impl Sink for FailpointSink {
    fn emit(&mut self, e: &Event) {
        match (&e.kind, e.phase) {
            (EventKind::Progress, Some(Phase::Unpack)) => failpoint::hit("unpack-progress"),
            (EventKind::StepEnd, Some(Phase::Boot)) => failpoint::hit("boot-step"),
            (EventKind::StepEnd, Some(Phase::Commit)) => failpoint::hit("commit-step"),
            _ => {}
        }
    }
}

/// A sink to add to the run's events (interruption tests).
pub fn failpoint_sink() -> Box<dyn Sink> {
    Box::new(FailpointSink)
}

/// The operator's answer to the preflight report: `confirm` gets the
/// report's text and returns false to cancel.
pub type Confirm<'a> = dyn FnMut(&str) -> anyhow::Result<bool> + 'a;

/// The whole install: preflight, confirmation (`confirm` is asked with the
/// report unless the run is a dry run), then the steps.
pub fn run(
    opts: &InstallOptions,
    changes: &Changes,
    events: &Events,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<Summary> {
    if let Some(img) = &opts.disk_image {
        return disk_image::run(img, opts, changes, events, confirm);
    }
    let started = Instant::now();
    let mut summary = Summary::new(opts.device.display().to_string());
    events.step_start(Phase::Preflight, "preflight", None);
    let pre = match preflight::preflight(opts, events) {
        Ok(p) => p,
        Err(e) => {
            events.step_end(Verdict::Failed);
            return Err(e);
        }
    };
    events.step_end(Verdict::Ok);
    // A signal during the preflight stops the run before the plan.
    crate::interrupt::check()?;
    events.plan(report::plan_json(&pre));
    summary.mode = Some(pre.decision.mode);
    summary.rootfs_sha256 = pre.rootfs_sha256.map(|h| crate::bytes::hex(&h));
    summary.data_copy = pre.data_copy.clone();
    if opts.dry_run {
        eprintln!("{}\n\n--dry-run: nothing was written.", pre.report);
        summary.result = report::Outcome::DryRun;
        summary.duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if !confirm(&pre.report)? {
        return Err(crate::exit::Declined.into());
    }
    steps::execute(opts, pre, changes, events, &mut summary)?;
    summary.result = report::Outcome::Pass;
    summary.duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LoadOptions;

    #[test]
    fn mkfs_options_apply_to_all_or_one() {
        let o = vec![
            "-E nodiscard".to_owned(),
            "DATA:-O ^metadata_csum -m 0".to_owned(),
            "-E lazy_itable_init=1".to_owned(),
        ];
        assert_eq!(
            mkfs_extra(&o, "APP"),
            ["-E", "nodiscard", "-E", "lazy_itable_init=1"]
        );
        assert_eq!(
            mkfs_extra(&o, "DATA"),
            [
                "-E",
                "nodiscard",
                "-O",
                "^metadata_csum",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1"
            ]
        );
        // An option value with a colon is not a partition prefix.
        assert_eq!(
            mkfs_extra(&["-E root_owner=0:0".to_owned()], "LOGS"),
            ["-E", "root_owner=0:0"]
        );
    }

    #[test]
    fn crypt_partitions_of_the_secure_boot_layout_keep_their_roles() {
        let l = crate::layout::load(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/flash-layouts/r32.5.0-testdistro-flash_jetson-tx2-sb_custom.xml"
            )),
            &LoadOptions {
                set: vec![("APPSIZE".into(), "6442450944".into())],
                disk_sectors: Some(61_071_360),
            },
        )
        .unwrap();
        let fs = filesystems(&l.user).unwrap();
        let got: Vec<(&str, &str, FsRole, bool)> = fs
            .iter()
            .map(|f| (f.name.as_str(), f.label(), f.role, f.crypt))
            .collect();
        assert_eq!(
            got,
            [
                ("crypt-APP", "APP", FsRole::Slot(Slot::A), true),
                ("crypt-APP_b", "APP_b", FsRole::Slot(Slot::B), true),
                ("crypt-DATA", "DATA", FsRole::Data, true),
                ("crypt-LOGS", "LOGS", FsRole::Scratch, true),
                ("crypt-EXTRA", "EXTRA", FsRole::Scratch, true)
            ]
        );
        // The filesystem is the partition less the LUKS2 header.
        let app = l.user.by_name("crypt-APP").unwrap();
        assert_eq!(
            fs[0].size + LUKS2_HEADER_BYTES,
            app.size_bytes(l.user.sector_size)
        );
        assert_eq!(slot_name(&fs, Slot::B), "crypt-APP_b");
        assert_eq!(fs[0].shown(), "APP (LUKS2 on crypt-APP)");
    }

    #[test]
    fn a_partition_both_plain_and_encrypted_is_refused() {
        let l = crate::layout::load(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/demo.xml")),
            &LoadOptions::default(),
        )
        .unwrap();
        let mut t = l.user.clone();
        let mut dup = t.by_name("DATA").unwrap().clone();
        dup.name = "crypt-DATA".into();
        t.partitions.push(dup);
        let err = filesystems(&t).unwrap_err();
        assert_eq!(report::failure_code(&err), report::FailCode::LayoutInvalid);
        assert!(
            err.to_string().contains("both DATA and crypt-DATA"),
            "{err}"
        );
    }

    #[test]
    fn filesystems_of_the_demo_layout() {
        let l = crate::layout::load(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/demo.xml")),
            &LoadOptions::default(),
        )
        .unwrap();
        let fs = filesystems(&l.user).unwrap();
        let names: Vec<(&str, FsRole)> = fs.iter().map(|f| (f.name.as_str(), f.role)).collect();
        assert_eq!(
            names,
            [
                ("APP", FsRole::Slot(Slot::A)),
                ("APP_b", FsRole::Slot(Slot::B)),
                ("DATA", FsRole::Data),
                ("LOGS", FsRole::Scratch),
                ("EXTRA", FsRole::Scratch)
            ]
        );
    }
}
