//! What the operator reads: the preflight report (shown before the
//! confirmation and by `--dry-run`), and the old tool's last line,
//! `PASS: successful installation of <artifact>` or `FAIL: <reason>`.
//! Everything here formats values the install computed; nothing decides.

use super::decide::{DataHandling, Decision};
use super::journal::{InstallMode, Record};
use super::slot_partition;
use crate::exit;
use crate::repartition::Plan;
use std::path::PathBuf;

/// What the report says of the rootfs.
#[derive(Debug, Clone)]
pub enum RootfsFinding {
    /// A local file, read through once.
    Scanned {
        /// The source, described.
        described: String,
        /// Its compression.
        format: String,
        /// Regular files in it.
        files: u64,
        /// Uncompressed tar bytes.
        tar_bytes: u64,
        /// SHA-256 of the file, hex.
        sha256: String,
        /// True when it matched an expected hash.
        verified: bool,
    },
    /// A stream, read only while it is unpacked.
    Streamed {
        /// The source, described.
        described: String,
        /// True when an expected SHA-256 is known.
        checked: bool,
    },
}

/// What the report says of the payload.
#[derive(Debug, Clone)]
pub enum PayloadFinding {
    /// A file, checked for this board.
    Checked {
        /// The payload.
        path: PathBuf,
        /// The check's summary.
        summary: String,
    },
    /// `--no-bootloader`: the boot partitions are left alone.
    None,
}

/// Everything the preflight report shows.
#[derive(Debug, Clone, Copy)]
pub struct PreflightView<'a> {
    /// The target, as shown.
    pub device: &'a str,
    /// Its size.
    pub sectors: u64,
    /// The layout file, as loaded.
    pub layout_source: &'a str,
    /// Partitions in the layout's user area.
    pub partitions: usize,
    /// The decision.
    pub decision: &'a Decision,
    /// The rootfs.
    pub rootfs: &'a RootfsFinding,
    /// The payload.
    pub payload: &'a PayloadFinding,
    /// The boot devices, when a payload will be written.
    pub boot: Option<&'a str>,
    /// DATA's name, when the layout has one.
    pub data_name: Option<&'a str>,
    /// The data tarball, when given.
    pub data_tarball: Option<&'a str>,
    /// The disk's table against the layout's.
    pub plan: &'a Plan,
    /// The interrupted install being finished.
    pub resume: Option<&'a Record>,
}

/// The preflight report.
pub fn preflight(v: &PreflightView<'_>) -> String {
    let d = v.decision;
    let mut out = vec![
        format!("Target:   {} ({} sectors)", v.device, v.sectors),
        format!(
            "Layout:   {} ({} partitions)",
            v.layout_source, v.partitions
        ),
        format!("Mode:     {} ({})", mode_text(d), d.why),
        rootfs_line(v.rootfs),
        payload_line(v.payload),
    ];
    if let Some(boot) = v.boot {
        out.push(format!("Boot:     {boot}"));
    }
    if let (Some(name), Some(data)) = (v.data_name, d.data) {
        out.push(data_line(name, data, v.data_tarball));
    }
    match d.mode {
        InstallMode::Initial => {
            out.push(String::new());
            out.push(crate::repartition::render_table(v.plan, v.device));
            if !d.erased.is_empty() {
                out.push(format!("Erased:   {}", d.erased.join(", ")));
            }
        }
        InstallMode::Update => out.push(format!(
            "Erased:   {} (slot {}; the running slot is not touched)",
            slot_partition(d.target),
            d.target.letter()
        )),
    }
    if let Some(r) = v.resume {
        out.push(format!(
            "Resuming: the {:?} install started at unix time {} (journal {}): finished steps are kept",
            r.mode,
            r.started,
            r.nonce_hex()
        ));
    }
    out.join("\n")
}

fn mode_text(d: &Decision) -> String {
    match d.mode {
        InstallMode::Initial => "initial install".to_string(),
        InstallMode::Update => format!(
            "update of slot {} ({})",
            d.target.letter(),
            slot_partition(d.target)
        ),
    }
}

fn rootfs_line(r: &RootfsFinding) -> String {
    match r {
        RootfsFinding::Scanned {
            described,
            format,
            files,
            tar_bytes,
            sha256,
            verified,
        } => format!(
            "Rootfs:   {described}: {format} {files} files, {tar_bytes} bytes, SHA-256 {sha256} ({})",
            if *verified {
                "verified"
            } else {
                "no checksum given"
            }
        ),
        RootfsFinding::Streamed { described, checked } => format!(
            "Rootfs:   {described} (streamed; {})",
            if *checked {
                "SHA-256 checked as it flows, before the boot partitions are written"
            } else {
                "no checksum given"
            }
        ),
    }
}

fn payload_line(p: &PayloadFinding) -> String {
    match p {
        PayloadFinding::Checked { path, summary } => {
            format!("Payload:  {} — {summary}", path.display())
        }
        PayloadFinding::None => {
            "Payload:  none (--no-bootloader): the boot partitions are left alone and the slots are not switched".into()
        }
    }
}

fn data_line(name: &str, data: DataHandling, tarball: Option<&str>) -> String {
    format!(
        "Data:     {name} {}{}",
        match data {
            DataHandling::InPlace => "kept as it is",
            DataHandling::SaveAndRestore =>
                "saved in memory, re-created and restored (a power cut before the restore loses it)",
            DataHandling::Recreate => "re-created empty",
        },
        match tarball {
            Some(t) => format!("; then {t} unpacked into it, keeping newer files"),
            None => String::new(),
        }
    )
}

/// The last line of a successful install; `boot_note` says when the boot
/// partitions were left alone.
pub fn pass_line(artifact: Option<&str>, boot_note: Option<&str>) -> String {
    let what = artifact.unwrap_or("the rootfs");
    match boot_note {
        Some(note) => format!("PASS: successful installation of {what} ({note})"),
        None => format!("PASS: successful installation of {what}"),
    }
}

/// The last line of a failed install, with what the exit code means for
/// the disk.
pub fn fail_line(reason: &str, code: u8) -> String {
    let hint = match code {
        exit::TARGET_CHANGED => {
            " (the disk was changed; run the same command again to resume the install)"
        }
        exit::REFUSED => " (nothing on the disk was changed)",
        _ => "",
    };
    format!("FAIL: {reason}{hint}")
}
