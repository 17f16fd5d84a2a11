//! Whether a payload can be installed: the core of `bup check`, also the
//! installer's preflight. Pure apart from reading the payload file.

use super::boot_plan::{self, BootMode, BootPlan, BootTargets, PlanInput};
use super::device::{UserArea, UserPartition};
use super::payload::{Payload, PayloadFormat};
use super::tnspec::Selection;
use super::BootMedium;
use crate::guid::Guid;
use crate::layout::{Layout, Soc};
use std::io::{Read, Seek};
use std::path::PathBuf;

/// What a check found.
#[derive(Debug)]
pub struct Outcome {
    /// The initialize-mode plan against the layout, when one could be made.
    pub planned: Option<BootPlan>,
    /// Reasons an install would fail (empty: it would succeed).
    pub problems: Vec<String>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// The boot device and user area a layout describes, as write targets.
pub fn layout_targets(l: &Layout) -> Option<(BootTargets, UserArea)> {
    let b = l.boot.as_ref()?;
    let medium = BootMedium::of(b.kind);
    let end = b
        .partitions
        .iter()
        .map(|p| p.offset + p.size)
        .max()
        .unwrap_or(0);
    let total = b
        .num_sectors
        .and_then(|n| n.checked_mul(512))
        .unwrap_or(end);
    let devices = match (medium, b.num_sectors) {
        (BootMedium::Emmc, Some(_)) => vec![
            ("boot0".to_string(), total / 2),
            ("boot1".to_string(), total - total / 2),
        ],
        _ => vec![("boot device".to_string(), total)],
    };
    let boot = BootTargets {
        medium,
        devices,
        partitions: b.partitions.clone(),
        source: format!("layout {}", l.source),
    };
    let user = UserArea {
        partitions: l
            .user
            .partitions
            .iter()
            .map(|p| UserPartition {
                name: p.name.clone(),
                size: p.size_bytes(l.user.sector_size),
                path: PathBuf::from("user area"),
                base: p.first_lba * l.user.sector_size,
            })
            .collect(),
        source: format!("layout {}", l.source),
    };
    Some((boot, user))
}

/// Checks `payload` (read from `file`), with the entries `sel` chose for this
/// board, against `layout`: every selected entry has a partition that
/// exists and is large enough, nothing is missing, the format is writable,
/// the order's dependencies hold both when initializing and when updating
/// (an update writes fewer partitions, so it can miss one a BCT needs).
pub fn check<R: Read + Seek>(
    payload: &Payload,
    file: &mut R,
    sel: &Selection,
    soc: Option<Soc>,
    layout: Option<&Layout>,
) -> Outcome {
    let mut problems = Vec::new();
    if payload.header.format == PayloadFormat::V3 {
        problems.push(boot_plan::BootPlanError::V3Payload.to_string());
    }
    if soc == Some(Soc::T234) {
        problems.push(boot_plan::BootPlanError::Soc(Soc::T234).to_string());
    }
    let mut planned = None;
    let mut notes = Vec::new();
    match (&layout, layout.and_then(layout_targets), soc) {
        (None, ..) => notes.push("no --layout: partition sizes not checked".to_string()),
        (Some(_), None, _) => {
            notes.push("the layout has no boot device: partition sizes not checked".into())
        }
        (Some(_), Some(_), None) => {
            notes.push("SoC unknown (give --soc): partition sizes not checked".into())
        }
        (Some(l), Some((boot, user)), Some(soc)) => {
            let names: Vec<String> = l
                .user
                .partitions
                .iter()
                .map(|p| p.name.clone())
                .chain(boot.partitions.iter().map(|p| p.name.clone()))
                .collect();
            let input = PlanInput {
                soc,
                mode: BootMode::Initialize,
                payload,
                selection: sel,
                boot: &boot,
                user: &user,
                layout_names: Some(&names),
                inventory: None,
            };
            match boot_plan::plan(&input, file, &mut || Guid::NIL) {
                Ok(p) => planned = Some(p),
                Err(e) => problems.push(e.to_string()),
            }
            if planned.is_some() && soc != Soc::T210 {
                let update = PlanInput {
                    mode: BootMode::Update {
                        slot: super::board::Slot::B,
                        activate: false,
                    },
                    ..input
                };
                if let Err(e) = boot_plan::plan(&update, file, &mut || Guid::NIL) {
                    problems.push(format!("updating slot B: {e}"));
                }
            }
        }
    }
    if planned.is_none() {
        // The payload's own dependencies, when no plan checked them.
        if let Some(Err(e)) = soc.map(|soc| boot_plan::check_entries(soc, payload, sel)) {
            if sel.missing.is_empty() && !sel.selected.is_empty() {
                problems.push(e.to_string());
            }
        }
        // Without a plan, the selection's own refusals still apply.
        if !sel.missing.is_empty() {
            problems.push(format!(
                "missing entries for partition(s): {} for TNSPEC {}",
                sel.missing.join(", "),
                sel.tnspec
            ));
        } else if sel.selected.is_empty() {
            problems.push(format!("no payload entry applies to TNSPEC {}", sel.tnspec));
        }
    }
    problems.dedup();
    Outcome {
        planned,
        problems,
        notes,
    }
}
