//! The plan as a table for people.

use super::{has_data, Content, CurrentTable, PartitionAction, PartitionPlan, Plan};
use crate::gpt::read::GptCopy;
use crate::layout::render::human_size;
use std::fmt::Write as _;

/// The table's column titles.
const HEAD: [&str; 8] = [
    "ACTION", "NUMBER", "NAME", "START", "END", "SIZE", "NOW", "DATA",
];

/// Renders the plan as a table for people.
pub fn render_table(plan: &Plan, device: &str) -> String {
    let mut s = String::new();
    disk_lines(&mut s, plan, device);
    let rows: Vec<[String; 8]> = plan
        .partitions
        .iter()
        .map(|p| partition_row(p, plan.sector_size))
        .collect();
    grid(&mut s, &rows);
    let _ = writeln!(s);
    summary(&mut s, plan);
    s
}

/// The disk, its current table and the blank line after them.
fn disk_lines(s: &mut String, plan: &Plan, device: &str) {
    let n = plan.disk_sectors;
    let _ = writeln!(
        s,
        "Disk {device}: {n} sectors ({})",
        human_size(n.saturating_mul(plan.sector_size))
    );
    let _ = match &plan.current {
        CurrentTable::None => writeln!(
            s,
            "Current table: none{}",
            plan.disk_content
                .as_ref()
                .map(|c| format!(" (the disk starts with: {})", c.describe()))
                .unwrap_or_default()
        ),
        CurrentTable::Unreadable { reason } => writeln!(s, "Current table: unreadable ({reason})"),
        CurrentTable::Gpt {
            copy,
            partitions,
            problem,
        } => writeln!(
            s,
            "Current table: GPT, {partitions} partition{}, read from the {}{}",
            if *partitions == 1 { "" } else { "s" },
            match copy {
                GptCopy::Primary => "primary",
                GptCopy::Backup => "backup",
            },
            problem
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(s);
}

/// One partition's cells, in the order of [`HEAD`].
fn partition_row(p: &PartitionPlan, sector_size: u64) -> [String; 8] {
    let shown = p.wanted.as_ref().or(p.current.as_ref());
    let (start, end, size) = shown
        .map(|e| {
            (
                e.first_lba.to_string(),
                e.last_lba.to_string(),
                human_size(e.sectors().saturating_mul(sector_size)),
            )
        })
        .unwrap_or_default();
    [
        p.action.as_str().to_owned(),
        shown.map(|e| e.number.to_string()).unwrap_or_default(),
        p.name.clone(),
        start,
        end,
        size,
        p.content
            .as_ref()
            .map(Content::describe)
            .unwrap_or_else(|| "-".into()),
        data_cell(p),
    ]
}

/// The DATA cell: what becomes of the data, and the details of the change.
fn data_cell(p: &PartitionPlan) -> String {
    let mut detail: Vec<String> = Vec::new();
    if let (Some(c), Some(w)) = (&p.current, &p.wanted) {
        if p.action == PartitionAction::Move || p.action == PartitionAction::Resize {
            detail.push(format!("now {}..{}", c.first_lba, c.last_lba));
        }
        if p.action == PartitionAction::Resize && !p.data_lost && w.last_lba > c.last_lba {
            detail.push("filesystem not grown".to_owned());
        }
    }
    detail.extend(p.changes.iter().cloned());
    let data = match (&p.content, p.data_lost) {
        (_, true) => "LOST",
        (Some(Content::Empty), false) => "none",
        (Some(_), false) => "kept",
        (None, false) => "-",
    };
    if detail.is_empty() {
        data.to_owned()
    } else {
        format!("{data} ({})", detail.join("; "))
    }
}

/// The title line and the rows, in columns as wide as their widest cell.
fn grid(s: &mut String, rows: &[[String; 8]]) {
    let mut widths = HEAD.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let _ = writeln!(s, "{}", line(&HEAD.map(str::to_owned), &widths));
    for r in rows {
        let _ = writeln!(s, "{}", line(r, &widths));
    }
}

/// One line of the grid: NUMBER, START and END right-aligned, the last cell
/// unpadded, trailing blanks cut.
fn line(cells: &[String], widths: &[usize; 8]) -> String {
    let mut l = String::new();
    for (i, (c, &w)) in cells.iter().zip(widths).enumerate() {
        let right = matches!(i, 1 | 3 | 4);
        if i + 1 == cells.len() {
            l.push_str(c);
        } else if right {
            let _ = write!(l, "{c:>w$}  ");
        } else {
            let _ = write!(l, "{c:<w$}  ");
        }
    }
    l.trim_end().to_owned()
}

/// The table and notes lines, and what the plan does.
fn summary(s: &mut String, plan: &Plan) {
    for c in &plan.header_changes {
        let _ = writeln!(s, "Table: {c}");
    }
    for c in &plan.notes {
        let _ = writeln!(s, "Note: {c}");
    }
    if plan.in_place {
        let _ = writeln!(
            s,
            "The layout is already in place: partitioning can be skipped."
        );
        return;
    }
    let changed = plan
        .partitions
        .iter()
        .filter(|p| p.action != PartitionAction::Keep || !p.changes.is_empty())
        .count();
    let lost: Vec<String> = plan
        .data_lost()
        .map(|p| match &p.content {
            Some(c) => format!("{} ({})", p.name, c.describe()),
            None => p.name.clone(),
        })
        .collect();
    let _ = write!(
        s,
        "The table must be rewritten: {changed} partition{} change{}",
        if changed == 1 { "" } else { "s" },
        if changed == 1 { "s" } else { "" }
    );
    if lost.is_empty() {
        let _ = writeln!(s, "; no data is lost.");
    } else {
        let _ = writeln!(s, "; data is lost on {}.", lost.join(", "));
    }
    if let Some(c) = plan.disk_content.as_ref().filter(|c| has_data(c)) {
        let _ = writeln!(
            s,
            "The disk holds {} without a GPT; it is lost.",
            c.describe()
        );
    }
}
