//! `sysinstall layout`.

use super::Context;
use crate::cli::LayoutArgs;

/// Runs `sysinstall layout`.
pub fn run(_args: &LayoutArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("layout: not implemented yet")
}
