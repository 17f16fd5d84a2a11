//! `sysinstall layout`: a flash layout (or partition_table CSV) in, the eMMC
//! partition table out.

use super::Context;
use crate::cli::{LayoutArgs, LayoutFormat};
use crate::exit::UsageError;
use crate::layout::{self, render, subst, DeviceSize, Layout, LoadOptions};
use std::path::Path;

/// Turns `--set` arguments into substitution pairs (a malformed one is a usage error).
pub fn assignments(set: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    subst::parse_assignments(set).map_err(|m| UsageError(m).into())
}

/// Loads a layout file with `--set` values for a disk of `disk_sectors`
/// (in the layout's sectors), else for `device`.
pub fn load(
    path: &Path,
    set: &[String],
    disk_sectors: Option<u64>,
    device: Option<DeviceSize>,
) -> anyhow::Result<Layout> {
    let opts = LoadOptions {
        set: assignments(set)?,
        disk_sectors,
    };
    let layout = layout::load_on(path, &opts, device.as_ref())?;
    for note in &layout.notes {
        log::warn!("{}: {note}", layout.source);
    }
    Ok(layout)
}

/// Runs `sysinstall layout`.
pub fn run(args: &LayoutArgs, _ctx: &Context) -> anyhow::Result<u8> {
    let device = match &args.device {
        Some(dev) => Some(crate::sys::blockdev::device_size(dev)?),
        None => None,
    };
    let layout = load(&args.file, &args.set, args.disk_sectors, device)?;
    let out = match args.format {
        LayoutFormat::Table => render::table(&layout.user, &layout.source),
        LayoutFormat::Csv => layout::csv::write(&layout.user, &layout.source)?,
        LayoutFormat::Json => render::json(&layout.user, layout.boot.as_ref()),
        LayoutFormat::BootConf => match &layout.boot {
            Some(b) => render::boot_conf(b),
            None => anyhow::bail!("{}: the layout describes no boot device", layout.source),
        },
    };
    print!("{out}");
    Ok(0)
}
