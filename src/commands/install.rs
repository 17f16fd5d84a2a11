//! `sysinstall install` (and `sysinstall` alone).

use super::Context;
use crate::cli::InstallArgs;

/// Runs `sysinstall install`.
pub fn run(_args: &InstallArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("install: not implemented yet")
}

/// Prints the old tool's final line for a failed install.
pub fn report_failure(line: &str, _code: u8) {
    println!("FAIL: {line}");
}
