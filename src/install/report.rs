//! What the operator reads: the preflight report (shown before the
//! confirmation and by `--dry-run`), and the old tool's last line,
//! `PASS: successful installation of <artifact>` or `FAIL: <reason>`.
//! Everything here formats values the install computed; nothing decides.

use super::decide::{DataHandling, Decision, Refusal};
use super::fit::NoSpace;
use super::journal::{InstallMode, Record};
use super::payload::BupSource;
use super::preflight::Preflight;
use crate::exit;
use crate::repartition::Plan;
use serde::Serialize;
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
    /// A partition image for the slots (`--image APP=`), read through once.
    Image {
        /// The source.
        described: String,
        /// What reading it found.
        line: String,
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
    /// An Orin: kernel payload, capsule, ESP and variables, one line each.
    Orin {
        /// The lines.
        lines: Vec<String>,
    },
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
    /// Where the copy of a DATA that is saved and restored is kept.
    pub data_copy: Option<&'a DataCopy>,
    /// The disk's table against the layout's.
    pub plan: &'a Plan,
    /// The interrupted install being finished.
    pub resume: Option<&'a Record>,
    /// The partition of the slot an update writes (`APP_b`, `crypt-APP_b`).
    pub target_name: &'a str,
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
        format!("Mode:     {} ({})", mode_text(d, v.target_name), d.why),
        rootfs_line(v.rootfs),
        payload_line(v.payload),
    ];
    if let Some(boot) = v.boot {
        out.push(format!("Boot:     {boot}"));
    }
    if let (Some(name), Some(data)) = (v.data_name, d.data) {
        out.push(data_line(name, data, v.data_copy, v.data_tarball));
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
            v.target_name,
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

fn mode_text(d: &Decision, target_name: &str) -> String {
    match d.mode {
        InstallMode::Initial => "initial install".to_string(),
        InstallMode::Update => format!("update of slot {} ({})", d.target.letter(), target_name),
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
        RootfsFinding::Image { described, line } => {
            format!("Rootfs:   {described} into every slot written: {line}")
        }
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
        PayloadFinding::Orin { lines } => lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{l}", if i == 0 { "Orin:     " } else { "          " }))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Where the copy of DATA is kept while DATA is re-created (`--keep-data`
/// where DATA moves); the plan, the `plan` event and the summary say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataCopy {
    /// The partition of the new layout holding the staged copy, or `ram`.
    pub kept_in: String,
    /// True for a staged copy: a re-run after a power cut restores from it.
    pub survives_power_cut: bool,
    /// Bytes of the copy (header and archive), when staged.
    pub bytes: Option<u64>,
}

impl DataCopy {
    /// The words the plan uses.
    pub fn describe(&self) -> String {
        match (self.survives_power_cut, self.bytes) {
            (true, Some(n)) => format!(
                "copy staged in {} ({n} bytes), survives a power cut",
                self.kept_in
            ),
            (true, None) => format!("copy staged in {}, survives a power cut", self.kept_in),
            (false, _) => "copy held in RAM: lost on a power cut".into(),
        }
    }
}

fn data_line(
    name: &str,
    data: DataHandling,
    copy: Option<&DataCopy>,
    tarball: Option<&str>,
) -> String {
    format!(
        "Data:     {name} {}{}",
        match (data, copy) {
            (DataHandling::InPlace, _) => "kept as it is".into(),
            (DataHandling::SaveAndRestore, Some(c)) =>
                format!("kept: {}; re-created and restored", c.describe()),
            (DataHandling::SaveAndRestore, None) => "kept: re-created and restored".into(),
            (DataHandling::Recreate, _) => "re-created empty".into(),
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

/// How a run ended, as the summary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Installed and verified.
    Pass,
    /// Failed (see `code`).
    Fail,
    /// `--dry-run`: preflight only.
    DryRun,
}

/// The `plan` event: what the run will do, once the preflight is through.
pub fn plan_json(pre: &Preflight) -> serde_json::Value {
    let d = &pre.decision;
    let mut plan = serde_json::json!({
        "device": pre.disk.path().display().to_string(),
        "sectors": pre.layout.user.disk_sectors,
        "layout": pre.layout.source,
        "mode": d.mode,
        "why": d.why,
        "target_slot": match d.mode {
            InstallMode::Update => Some(d.target.letter()),
            InstallMode::Initial => None,
        },
        "in_place": pre.plan.in_place,
        "create": d.create,
        "erased": d.erased,
        "data": d.data.map(|h| match h {
            DataHandling::InPlace => "in_place",
            DataHandling::SaveAndRestore => "save_and_restore",
            DataHandling::Recreate => "recreate",
        }),
        "data_copy": pre.data_copy,
        "payload": match &pre.bup {
            BupSource::File(p) => Some(p.display().to_string()),
            BupSource::None => None,
        },
        "boot_devices": pre.boot_devices.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "bootinfo": super::preflight::bootinfo_device(pre.soc, &pre.layout, &pre.boot_devices, &pre.bup)
            .map(|p| p.display().to_string()),
        "resuming": pre.resume.is_some(),
        "partitions": pre.plan.partitions,
    });
    // Added only for layouts with `crypt-` partitions: NAME → "luks2".
    let crypt: serde_json::Map<String, serde_json::Value> = pre
        .fs
        .iter()
        .filter(|f| f.crypt)
        .map(|f| (f.name.clone(), "luks2".into()))
        .collect();
    if !crypt.is_empty() {
        plan["encrypted"] = crypt.into();
    }
    if let Some(o) = &pre.orin {
        plan["uefi_variables"] = o.ops.iter().map(ToString::to_string).collect();
    }
    plan
}

/// A stable, machine-readable reason for a failed run (the `code` of the
/// failure event and the summary). Documented in the README; never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCode {
    /// The command line contradicts itself or the site configuration.
    Usage,
    /// Cancelled at the confirmation prompt.
    Declined,
    /// Stopped by SIGINT, SIGTERM or SIGHUP.
    Interrupted,
    /// The disk is in use, locked by another program, or busy.
    DeviceBusy,
    /// The disk refuses writes.
    DeviceReadOnly,
    /// The target is not a whole-disk block device, or a boot device is
    /// wrong (missing, the same as another, part of the target, too small).
    DeviceInvalid,
    /// The layout file is unreadable or breaks a rule.
    LayoutInvalid,
    /// The mode asked for cannot be done on this disk.
    ModeRefused,
    /// An argument or the site configuration is malformed (a checksum that
    /// is not hex, an unknown key).
    InputInvalid,
    /// A file named on the command line or in the configuration does not
    /// exist (or the server says so: HTTP 404, 410).
    InputMissing,
    /// The rootfs or data tarball is corrupt or holds unsafe members.
    RootfsInvalid,
    /// A stream's SHA-256 is not the expected one.
    ChecksumMismatch,
    /// A source cannot be had for now (a server error, the network, a
    /// stall, a proxy that cannot be reached).
    SourceUnavailable,
    /// The TLS handshake with a server failed: most often its certificate
    /// is not trusted (a private CA not given with `--cacert`).
    TlsFailed,
    /// A server, registry, token service or proxy wants credentials or
    /// refused the ones given (HTTP 401, 403, 407).
    AuthFailed,
    /// What is to be installed does not fit.
    NoSpace,
    /// The bootloader payload is corrupt, missing, or not for this board.
    PayloadMismatch,
    /// A program the install runs is not installed (or the kernel lacks
    /// dm-crypt for the `crypt-` partitions).
    ToolMissing,
    /// The layout has `crypt-` partitions and no key was given (or the key
    /// command failed or printed nothing).
    KeyMissing,
    /// The key does not open an existing LUKS container the install keeps.
    KeyRejected,
    /// Reading or writing a device failed.
    IoError,
    /// Anything else.
    Failed,
}

impl FailCode {
    /// The code as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::Usage => "usage",
            FailCode::Declined => "declined",
            FailCode::Interrupted => "interrupted",
            FailCode::DeviceBusy => "device_busy",
            FailCode::DeviceReadOnly => "device_read_only",
            FailCode::DeviceInvalid => "device_invalid",
            FailCode::InputInvalid => "input_invalid",
            FailCode::InputMissing => "input_missing",
            FailCode::LayoutInvalid => "layout_invalid",
            FailCode::ModeRefused => "mode_refused",
            FailCode::RootfsInvalid => "rootfs_invalid",
            FailCode::ChecksumMismatch => "checksum_mismatch",
            FailCode::SourceUnavailable => "source_unavailable",
            FailCode::TlsFailed => "tls_failed",
            FailCode::AuthFailed => "auth_failed",
            FailCode::NoSpace => "no_space",
            FailCode::PayloadMismatch => "payload_mismatch",
            FailCode::ToolMissing => "tool_missing",
            FailCode::KeyMissing => "key_missing",
            FailCode::KeyRejected => "key_rejected",
            FailCode::IoError => "io_error",
            FailCode::Failed => "failed",
        }
    }

    /// True when the same command may succeed when run again as it is (the
    /// cause may be gone: a signal, a busy disk, the network, a flaky read).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            FailCode::Interrupted
                | FailCode::DeviceBusy
                | FailCode::SourceUnavailable
                | FailCode::IoError
        )
    }
}

/// An error the install raises itself, with its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    /// The code.
    pub code: FailCode,
    /// The one-line reason.
    pub message: String,
}

/// `Err(Coded)` with a formatted message.
macro_rules! refuse {
    ($code:expr, $($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::install::report::Coded {
            code: $code,
            message: format!($($arg)*),
        }))
    };
}
pub(crate) use refuse;

/// For `map_err` at a stage boundary: `err` with `code`, unless something
/// in it already tells more (an interruption, a busy device, a read error,
/// a missing file). The message is unchanged.
pub fn or_code(code: FailCode) -> impl FnOnce(anyhow::Error) -> anyhow::Error {
    recode(code, &[FailCode::Failed])
}

/// `err` with `code` when its own code is one of `replace`.
pub fn recode(
    code: FailCode,
    replace: &'static [FailCode],
) -> impl FnOnce(anyhow::Error) -> anyhow::Error {
    move |err| {
        if replace.contains(&failure_code(&err)) {
            anyhow::Error::new(Coded {
                code,
                message: format!("{err:#}"),
            })
        } else {
            err
        }
    }
}

/// The first `T` in `err`'s chain, looking into io::Errors and the
/// decoder's `SourceError`s too (a download's error reaches the install
/// through `Read`).
fn find_deep<T: std::error::Error + 'static>(err: &anyhow::Error) -> Option<&T> {
    fn visit<'a, T: std::error::Error + 'static>(
        e: &'a (dyn std::error::Error + 'static),
        depth: u32,
    ) -> Option<&'a T> {
        if depth > 16 {
            return None;
        }
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(t) = visit::<T>(inner, depth + 1) {
                return Some(t);
            }
        }
        if let Some(s) = e.downcast_ref::<crate::rootfs::decompress::SourceError>() {
            if let Some(t) = visit::<T>(&s.0, depth + 1) {
                return Some(t);
            }
        }
        e.source().and_then(|s| visit::<T>(s, depth + 1))
    }
    err.chain().find_map(|c| visit::<T>(c, 0))
}

/// The code of a failed run, from the most telling error in its chain.
pub fn failure_code(err: &anyhow::Error) -> FailCode {
    use crate::bup::boot_plan::BootPlanError;
    use crate::bup::payload::PayloadError;
    use crate::interrupt::Interrupted;
    use crate::rootfs::http::{Fault, HttpStatus, SourceFault};
    use crate::rootfs::source::ChecksumMismatch;
    use crate::sys::blockdev::{DeviceLocked, ReadOnly};
    use crate::sys::holders::InUse;
    use std::io;
    let ios = || {
        err.chain()
            .filter_map(|c| c.downcast_ref::<io::Error>())
            .collect::<Vec<_>>()
    };
    let has = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| {
        err.chain().any(f)
            || ios()
                .iter()
                .filter_map(|e| e.get_ref())
                .any(|inner| f(inner))
    };
    // (A context added to say why is found by downcast, not in the chain.)
    if err.downcast_ref::<Interrupted>().is_some() || has(&|e| e.is::<Interrupted>()) {
        return FailCode::Interrupted;
    }
    if has(&|e| e.is::<exit::UsageError>()) {
        return FailCode::Usage;
    }
    if let Some(r) = err.chain().find_map(|c| c.downcast_ref::<Refusal>()) {
        return if r.is_usage() {
            FailCode::Usage
        } else {
            FailCode::ModeRefused
        };
    }
    if has(&|e| e.is::<exit::Declined>()) {
        return FailCode::Declined;
    }
    if let Some(c) = err.chain().find_map(|c| c.downcast_ref::<Coded>()) {
        return c.code;
    }
    if has(&|e| e.is::<DeviceLocked>() || e.is::<InUse>()) {
        return FailCode::DeviceBusy;
    }
    if has(&|e| e.is::<ReadOnly>()) {
        return FailCode::DeviceReadOnly;
    }
    if has(&|e| e.is::<ChecksumMismatch>()) {
        return FailCode::ChecksumMismatch;
    }
    if has(&|e| e.is::<NoSpace>()) {
        return FailCode::NoSpace;
    }
    // A download's error may sit in an io::Error, itself in a SourceError.
    if let Some(f) = find_deep::<SourceFault>(err) {
        return match f.fault {
            Fault::Network => FailCode::SourceUnavailable,
            Fault::Tls => FailCode::TlsFailed,
            Fault::Auth => FailCode::AuthFailed,
            Fault::Digest => FailCode::ChecksumMismatch,
        };
    }
    if let Some(status) = err
        .chain()
        .find_map(|c| c.downcast_ref::<HttpStatus>())
        .map(|s| s.code)
    {
        return match status {
            404 | 410 => FailCode::InputMissing,
            401 | 403 | 407 => FailCode::AuthFailed,
            _ => FailCode::SourceUnavailable,
        };
    }
    if has(&|e| e.is::<crate::rootfs::decompress::SourceError>()) {
        return FailCode::SourceUnavailable;
    }
    if has(&|e| e.is::<crate::layout::LayoutError>()) {
        return FailCode::LayoutInvalid;
    }
    if has(&|e| {
        e.is::<PayloadError>()
            || e.is::<BootPlanError>()
            || e.is::<crate::uefi::preflight::Refusal>()
    }) {
        return FailCode::PayloadMismatch;
    }
    match ios().first().map(|e| (e.kind(), e.raw_os_error())) {
        Some((_, Some(libc::ENOSPC))) => FailCode::NoSpace,
        Some((_, Some(libc::EBUSY))) => FailCode::DeviceBusy,
        Some((_, Some(libc::EROFS))) => FailCode::DeviceReadOnly,
        Some((io::ErrorKind::NotFound, _)) => FailCode::InputMissing,
        Some((io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof, _)) => {
            FailCode::RootfsInvalid
        }
        Some(_) => FailCode::IoError,
        None => FailCode::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::decompress::SourceError;
    use crate::rootfs::http::{fault, Fault, HttpStatus, SourceFault};
    use std::io;

    /// A download that fails while it is unpacked reaches the install as
    /// the decoder's error: an io::Error holding a SourceError holding the
    /// reader's io::Error holding the fault.
    fn mid_stream(f: Fault) -> anyhow::Error {
        let reader = io::Error::other(SourceFault {
            fault: f,
            message: "downloading x (at byte 5, after 0 retries): ...".into(),
        });
        let decoder = io::Error::new(reader.kind(), SourceError(reader));
        anyhow::Error::new(decoder).context("unpacking APP")
    }

    #[test]
    fn a_source_fault_is_found_at_any_depth() {
        for (f, code) in [
            (Fault::Network, FailCode::SourceUnavailable),
            (Fault::Tls, FailCode::TlsFailed),
            (Fault::Auth, FailCode::AuthFailed),
            (Fault::Digest, FailCode::ChecksumMismatch),
        ] {
            assert_eq!(failure_code(&mid_stream(f)), code);
            let direct = fault(f, anyhow::anyhow!("x")).context("resolving oci://r/x:1");
            assert_eq!(failure_code(&direct), code);
        }
        // A decoder error with no fault in it is still the source's.
        let plain = io::Error::other(SourceError(io::Error::other("broken")));
        assert_eq!(
            failure_code(&anyhow::Error::new(plain)),
            FailCode::SourceUnavailable
        );
    }

    #[test]
    fn http_statuses_map_to_codes() {
        let status = |code| {
            anyhow::Error::new(HttpStatus {
                code,
                reason: String::new(),
            })
            .context("downloading u")
        };
        assert_eq!(failure_code(&status(404)), FailCode::InputMissing);
        assert_eq!(failure_code(&status(410)), FailCode::InputMissing);
        for c in [401, 403, 407] {
            assert_eq!(failure_code(&status(c)), FailCode::AuthFailed);
        }
        assert_eq!(failure_code(&status(503)), FailCode::SourceUnavailable);
        assert!(FailCode::SourceUnavailable.retryable());
        assert!(!FailCode::TlsFailed.retryable() && !FailCode::AuthFailed.retryable());
    }

    #[test]
    fn the_plan_says_where_the_copy_of_data_is() {
        let staged = DataCopy {
            kept_in: "APP_b".into(),
            survives_power_cut: true,
            bytes: Some(8192),
        };
        let ram = DataCopy {
            kept_in: "ram".into(),
            survives_power_cut: false,
            bytes: None,
        };
        let line = |c| data_line("DATA", DataHandling::SaveAndRestore, Some(c), None);
        assert_eq!(
            line(&staged),
            "Data:     DATA kept: copy staged in APP_b (8192 bytes), survives a power cut; re-created and restored"
        );
        assert_eq!(
            line(&ram),
            "Data:     DATA kept: copy held in RAM: lost on a power cut; re-created and restored"
        );
        assert_eq!(
            serde_json::to_value(&staged).unwrap(),
            serde_json::json!({"kept_in": "APP_b", "survives_power_cut": true, "bytes": 8192})
        );
        assert_eq!(
            serde_json::to_value(&ram).unwrap(),
            serde_json::json!({"kept_in": "ram", "survives_power_cut": false, "bytes": null})
        );
    }
}
