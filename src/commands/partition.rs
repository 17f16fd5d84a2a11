//! `sysinstall partition`.

use super::Context;
use crate::cli::PartitionArgs;

/// Runs `sysinstall partition`.
pub fn run(_args: &PartitionArgs, _ctx: &Context) -> anyhow::Result<u8> {
    anyhow::bail!("partition: not implemented yet")
}
