//! `sysinstall bup list|check|write`.

use super::Context;
use crate::cli::{BupCheckArgs, BupWriteArgs, ReportFormat};
use std::path::Path;

/// Runs `sysinstall bup list`.
pub fn list(_file: &Path, _format: ReportFormat, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("bup list: not implemented yet")
}

/// Runs `sysinstall bup check`.
pub fn check(_args: &BupCheckArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("bup check: not implemented yet")
}

/// Runs `sysinstall bup write`.
pub fn write(_args: &BupWriteArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("bup write: not implemented yet")
}
