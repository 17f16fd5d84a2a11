//! Where the install's bootloader update payload (BUP) comes from: given
//! with `--bup`, or taken from the new rootfs while the preflight reads it;
//! either way checked for this board before anything is written. A rootfs
//! that can be read only once (standard input, a pipe) cannot give its
//! payload before the disk is erased, so it needs `--bup` (or
//! `--no-bootloader`).

use super::journal::InstallMode;
use super::InstallOptions;
use crate::bup::update::{self, IdentityRequest};
use crate::layout::{Layout, Soc};
use crate::rootfs::{self, Capture};
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The payload an initial install writes, inside the new rootfs.
pub const BUP_INITIALIZE: &str = "opt/ota_package/full_init_payload";
/// The payload an update writes (and the fallback for an initial install).
pub const BUP_UPDATE: &str = "opt/ota_package/bl_update_payload";
/// Largest payload taken from the rootfs (real ones are about 30–50 MB).
pub const MAX_BUP_BYTES: u64 = 256 << 20;

/// Where the payload for the boot partitions comes from.
#[derive(Debug, Clone)]
pub enum BupSource {
    /// `--no-bootloader`: the boot partitions are left alone.
    None,
    /// A file (`--bup`, or the payload extracted from the rootfs).
    File(PathBuf),
}

/// Where a mode takes its payload from inside the rootfs, in order of preference.
pub fn paths(mode: InstallMode) -> &'static [&'static str] {
    match mode {
        InstallMode::Initial => &[BUP_INITIALIZE, BUP_UPDATE],
        InstallMode::Update => &[BUP_UPDATE],
    }
}

/// The members to capture while reading the rootfs, to get its payload.
pub fn captures() -> Vec<Capture> {
    [BUP_INITIALIZE, BUP_UPDATE]
        .iter()
        .map(|p| Capture {
            path: (*p).into(),
            max_bytes: MAX_BUP_BYTES,
        })
        .collect()
}

/// The payload for `mode` among the captured members.
pub fn pick(captured: &[rootfs::Captured], mode: InstallMode) -> Option<Vec<u8>> {
    paths(mode).iter().find_map(|p| {
        captured
            .iter()
            .find(|c| c.path == *p)
            .map(|c| c.data.clone())
    })
}

/// Writes a payload extracted from the rootfs where the boot-partition
/// update can open it.
pub fn stash(rundir: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    stash_as(rundir, "bup-payload", bytes)
}

/// Writes a file taken from the rootfs into the run directory as `name`.
pub fn stash_as(rundir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = rundir.join(name);
    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Runs `bup check` for this board against the layout; an error when an
/// install would fail, else a one-line summary for the report.
pub fn check(
    opts: &InstallOptions,
    layout: &Layout,
    soc: Option<Soc>,
    path: &Path,
) -> anyhow::Result<String> {
    let (mut file, payload) = update::open_payload(path)?;
    let identity = update::identify(
        &opts.sysroot,
        &IdentityRequest {
            soc,
            tnspec: opts.tnspec.clone(),
            machine: opts.machine.clone(),
            layout_soc: layout.soc,
        },
    )?;
    let sel = crate::bup::tnspec::select(&payload.entries, &identity.tnspec);
    let outcome = crate::bup::check::check(&payload, &mut file, &sel, identity.soc, Some(layout));
    if let Some(p) = outcome.problems.first() {
        super::report::refuse!(
            super::report::FailCode::PayloadMismatch,
            "{}: {p} (TNSPEC {})",
            path.display(),
            identity.tnspec
        );
    }
    Ok(format!(
        "{} entries selected for TNSPEC {} ({})",
        sel.selected.len(),
        identity.tnspec,
        identity.tnspec_source
    ))
}
