//! `sysinstall unpack`.

use super::Context;
use crate::cli::UnpackArgs;

/// Runs `sysinstall unpack`.
pub fn run(_args: &UnpackArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("unpack: not implemented yet")
}
