//! `sysinstall plan`.

use super::Context;
use crate::cli::PlanArgs;

/// Runs `sysinstall plan`.
pub fn run(_args: &PlanArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("plan: not implemented yet")
}
