//! `sysinstall partition`: show what changes, confirm, write the GPT, make
//! the kernel see it. `--dry-run` prints the exact table and every write
//! (including what is zapped) and changes nothing.

use super::Context;
use crate::cli::{LayoutSource, PartitionArgs};
use crate::disk::{self, DiskEnv, Found, PreparedGpt, WrittenTable};
use crate::events::Level;
use crate::events::{Event, EventKind, Events, Sink};
use crate::exit::{Declined, UsageError, SUCCESS};
use crate::gpt::write::{Fill, GptWrites, NewGpt};
use crate::guid::Guid;
use crate::layout::render::{human_size, type_code};
use crate::layout::{Layout, PartitionTable};
use crate::repartition;
use std::fmt::Write as _;
use std::path::Path;

/// The `--layout` path (a usage error without one). Shared with `plan`.
pub(super) fn layout_path(src: &LayoutSource) -> anyhow::Result<&Path> {
    src.layout
        .as_deref()
        .ok_or_else(|| UsageError("--layout FILE is required".into()).into())
}

/// Loads `--layout` with `--set` values, placed for `device` (its real size
/// and sector size). Shared with `plan`.
pub(super) fn load_layout(src: &LayoutSource, device: &Path) -> anyhow::Result<Layout> {
    let path = layout_path(src)?;
    let size = crate::sys::blockdev::device_size(device)?;
    super::layout::load(path, &src.set, None, Some(size))
}

/// Runs `sysinstall partition`.
pub fn run(args: &PartitionArgs, ctx: &Context) -> anyhow::Result<u8> {
    let dev = args.device.display().to_string();
    layout_path(&args.layout)?;
    // Fail before any work when nobody could answer the question.
    super::prompt::require_answerable(args.dry_run || args.yes, "partition", &dev)?;
    let layout = load_layout(&args.layout, &args.device)?;
    let table = &layout.user;
    let opts = DiskEnv::default();

    if args.dry_run {
        let p = disk::inspect(&args.device, table)?;
        let mut out = format!("Dry run: nothing is written to {dev}.\n\n");
        out.push_str(&render_gpt(&p.gpt, table, &p.found, &dev));
        out.push('\n');
        out.push_str(&render_writes(&p.writes));
        out.push('\n');
        out.push_str(&repartition::render_table(&p.plan, &dev));
        print!("{out}");
        disk::check_not_in_use(&args.device, &opts)?;
        return Ok(SUCCESS);
    }

    let p = disk::prepare(&args.device, table, &opts)?;
    if !ctx.quiet {
        eprint!("{}", repartition::render_table(&p.plan, &dev));
    }
    if !args.yes {
        confirm(&p, &dev)?;
    }
    let events = Events::new(vec![Box::new(LogSink)]);
    let written = disk::write(p, &opts, &ctx.changes, &events)?;
    print!("{}", render_written(&written, table));
    Ok(SUCCESS)
}

/// Asks on the terminal (see [`super::prompt`]).
fn confirm(p: &PreparedGpt, dev: &str) -> anyhow::Result<()> {
    let lost: Vec<&str> = p.plan.data_lost().map(|x| x.name.as_str()).collect();
    let mut question = format!("Write a new GPT to {dev}");
    if !lost.is_empty() {
        let _ = write!(question, ", destroying the data on {}", lost.join(", "));
    }
    question.push('?');
    if super::prompt::ask(&question)? {
        Ok(())
    } else {
        Err(Declined.into())
    }
}

/// Forwards operator messages to the log (`-v` shows them).
struct LogSink;

impl Sink for LogSink {
    fn emit(&mut self, event: &Event) {
        if let EventKind::Message { level, text } = &event.kind {
            match level {
                Level::Error => log::error!("{text}"),
                Level::Warn => log::warn!("{text}"),
                Level::Info => log::info!("{text}"),
            }
        }
    }
}

/// Where a unique GUID of the new table comes from, for the dry run.
fn guid_origin(guid: Guid, number: u32, table: &PartitionTable, found: &Found) -> &'static str {
    if table.by_number(number).and_then(|p| p.unique_guid) == Some(guid) {
        return "layout";
    }
    match found {
        Found::Gpt(g, _) if g.entries.iter().any(|(_, e)| e.unique_guid == guid) => "kept",
        _ => "random",
    }
}

/// The new table, like `sgdisk --print` plus the GUIDs and their origin.
fn render_gpt(gpt: &NewGpt, table: &PartitionTable, found: &Found, dev: &str) -> String {
    let h = &gpt.header;
    let n = gpt.disk_sectors;
    let mut s = String::new();
    let disk_guid_origin = match found {
        Found::Gpt(g, _) if g.header.disk_guid == h.disk_guid => "kept",
        _ => "random",
    };
    let _ = writeln!(
        s,
        "New GPT for {dev}: {n} sectors ({})",
        human_size(n.saturating_mul(gpt.sector_size))
    );
    let _ = writeln!(
        s,
        "Disk identifier (GUID): {} ({disk_guid_origin})",
        h.disk_guid
    );
    let _ = writeln!(
        s,
        "Partition table holds up to {} entries, at LBA {} and {}",
        h.num_partition_entries,
        h.partition_entry_lba,
        gpt.backup_entry_lba()
    );
    let _ = writeln!(
        s,
        "First usable sector is {}, last usable sector is {}",
        h.first_usable_lba, h.last_usable_lba
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Number  Start (sector)    End (sector)  Size        Code  Unique GUID                                    Name"
    );
    for (num, e) in &gpt.entries {
        let code = type_code(&e.type_guid);
        let _ = writeln!(
            s,
            "{num:>6}  {:>14}  {:>14}  {:<10}  {code:<4}  {} ({:<6})  {}",
            e.first_lba,
            e.last_lba,
            human_size((e.last_lba - e.first_lba + 1).saturating_mul(gpt.sector_size)),
            e.unique_guid,
            guid_origin(e.unique_guid, *num, table, found),
            e.name
        );
    }
    if s.contains("(random") {
        let _ = writeln!(
            s,
            "GUIDs marked random are drawn anew when the table is written."
        );
    }
    s
}

/// Every write in order, zaps marked, barriers shown.
fn render_writes(writes: &GptWrites) -> String {
    let mut s = String::from("Writes, in order (sync = fsync barrier):\n");
    for step in &writes.steps {
        let range = if step.sectors == 1 {
            format!("LBA {}", step.lba)
        } else {
            format!("LBA {}..{}", step.lba, step.lba + step.sectors - 1)
        };
        let what = match (&step.content, step.zap) {
            (Fill::Zeros, true) => format!("zap (zeros): {}", step.what),
            (_, true) => format!("zap: {}", step.what),
            _ => step.what.clone(),
        };
        let unit = if step.sectors == 1 {
            "sector "
        } else {
            "sectors"
        };
        let _ = writeln!(s, "  {range:<24} {:>6} {unit}  {what}", step.sectors);
        if step.barrier_after {
            let _ = writeln!(s, "  sync");
        }
    }
    s
}

/// What was written and where the kernel put the partitions.
fn render_written(w: &WrittenTable, table: &PartitionTable) -> String {
    let dev = w.device.display();
    let mut s = format!(
        "Wrote and verified the GPT on {dev}: {} partitions.\n",
        w.gpt.entries.len()
    );
    match &w.kernel {
        Some(disk::KernelUpdate::Reread) => s.push_str("The kernel re-read the partition table.\n"),
        Some(disk::KernelUpdate::Blkpg { reason, .. }) => {
            let _ = writeln!(
                s,
                "Registered the partitions with the kernel via BLKPG ({reason})."
            );
        }
        None => {}
    }
    if !w.nodes.is_empty() {
        s.push('\n');
        for node in &w.nodes {
            let _ = writeln!(
                s,
                "{:>6}  {:<24}  {}",
                node.number,
                node.path.display(),
                node.name
            );
        }
    } else {
        for (num, e) in &w.gpt.entries {
            let fixed = table.by_number(*num).and_then(|p| p.unique_guid).is_some();
            let _ = writeln!(
                s,
                "{num:>6}  {:>12}  {:>12}  {}{}  {}",
                e.first_lba,
                e.last_lba,
                e.unique_guid,
                if fixed { "*" } else { " " },
                e.name
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::write::{build, plan_writes};
    use crate::guid::BASIC_DATA;
    use crate::layout::Partition;

    fn table() -> PartitionTable {
        let p = |number: u32, name: &str, first: u64, last: u64, guid: Option<&str>| Partition {
            number,
            name: name.into(),
            first_lba: first,
            last_lba: last,
            type_guid: BASIC_DATA,
            unique_guid: guid.map(|g| Guid::parse(g).unwrap()),
            fills_disk: false,
        };
        PartitionTable {
            sector_size: 512,
            disk_sectors: 65536,
            first_usable_lba: 40,
            last_usable_lba: 65502,
            partitions: vec![
                p(
                    1,
                    "APP",
                    8192,
                    65502,
                    Some("0D1BE901-1111-4222-8333-444455556666"),
                ),
                p(2, "kernel", 40, 8191, None),
            ],
        }
    }

    #[test]
    fn dry_run_shows_the_exact_table_and_every_write() {
        let t = table();
        let gpt = build(&t, None).unwrap();
        let mut disk = std::io::Cursor::new(vec![0u8; 65536 * 512]);
        let writes = plan_writes(&mut disk, &gpt).unwrap();
        let text = render_gpt(
            &gpt,
            &t,
            &Found::Nothing(crate::repartition::Content::Empty),
            "disk.img",
        );
        let writes_text = render_writes(&writes);
        eprintln!("{text}\n{writes_text}");
        assert!(text.contains("First usable sector is 40, last usable sector is 65502"));
        assert!(text.contains("0D1BE901-1111-4222-8333-444455556666 (layout"));
        assert!(text.contains("(random)  kernel"), "{text}");
        assert!(text.contains("(random)\n"), "disk GUID: {text}");
        let lines: Vec<&str> = writes_text.lines().collect();
        assert!(lines[1].contains("LBA 0 ") && lines[1].contains("protective MBR"));
        assert!(lines[2].contains("LBA 65503..65534") && lines[2].contains("backup GPT entries"));
        assert!(lines[3].contains("LBA 65535 ") && lines[3].contains("backup GPT header"));
        assert_eq!(lines[4].trim(), "sync");
        assert!(lines[5].contains("LBA 34..39") && lines[5].contains("zap (zeros)"));
        assert!(lines[6].contains("LBA 2..33") && lines[6].contains("primary GPT entries"));
        assert_eq!(lines[7].trim(), "sync");
        assert!(lines[8].contains("LBA 1 ") && lines[8].contains("primary GPT header"));
    }
}
