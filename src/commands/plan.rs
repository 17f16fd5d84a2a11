//! `sysinstall plan`: compare a device's GPT with a layout; read-only.

use super::partition::load_layout;
use super::Context;
use crate::cli::{PlanArgs, ReportFormat};
use crate::disk;
use crate::exit::SUCCESS;
use crate::repartition::{render_table, Plan};
use anyhow::Context as _;

/// The JSON document: the plan plus the device it is for.
#[derive(serde::Serialize)]
struct Report<'a> {
    device: String,
    #[serde(flatten)]
    plan: &'a Plan,
}

/// Runs `sysinstall plan`.
pub fn run(args: &PlanArgs, _ctx: &Context) -> anyhow::Result<u8> {
    let dev = args.device.display().to_string();
    let layout = load_layout(&args.layout, &args.device)?;
    let p = disk::inspect(&args.device, &layout.user)?;
    match args.format {
        ReportFormat::Table => print!("{}", render_table(&p.plan, &dev)),
        ReportFormat::Json => {
            let report = Report {
                device: dev,
                plan: &p.plan,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&report).context("rendering the plan as JSON")?
            );
        }
    }
    Ok(SUCCESS)
}
