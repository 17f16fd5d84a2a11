//! What an install will do, decided from what the preflight found: the mode,
//! the slot it writes, which filesystems it (re)creates, what becomes of
//! DATA, and what is erased. Pure: facts in, a [`Decision`] or a
//! [`Refusal`] out, so every rule is a table row in the tests below.
//!
//! The rules:
//!
//! * An interrupted install recorded on the disk is finished in its own mode
//!   (`--restart` ignores it; asking for the other mode is a usage error).
//! * `auto` is *update* when the layout is in place, the layout has two
//!   slots on an A/B boot chain (not T210), the boot device's table is the
//!   layout's (an update writes by that table), and the board runs a slot
//!   that holds a root filesystem; otherwise *initial*, and the reason says
//!   which condition failed.
//! * *update* writes the slot the board does not run (or the one the journal
//!   names); *initial* writes both, starting from slot A.
//! * DATA stays as it is in an update, or when `--keep-data` finds it in
//!   place with a filesystem; with `--keep-data` and a DATA that moves, it is
//!   saved and restored (also when an interrupted install is resumed: its
//!   journal records a copy staged on the disk, or the table was not written
//!   yet and the old DATA is still there); otherwise it is re-created.

#![deny(clippy::indexing_slicing)]

use super::journal::{InstallMode, Record};
use super::{Fs, FsRole};
use crate::bup::board::Slot;
use crate::layout::Soc;
use crate::probe::Content;
use crate::repartition::{PartitionAction, Plan};

/// The mode the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Decide from the disk and the board.
    #[default]
    Auto,
    /// Re-lay-out (unless in place) and install everything.
    Initial,
    /// Install the inactive slot and switch to it.
    Update,
}

/// What the operator asked for, as far as the decision goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    /// `--mode`.
    pub mode: ModeRequest,
    /// `--restart`: ignore an interrupted install's journal.
    pub restart: bool,
    /// `--keep-data`.
    pub keep_data: bool,
    /// `--discard-data`: an initial install may re-create a DATA that holds
    /// a filesystem.
    pub discard_data: bool,
}

/// The slot the board runs from, and how that was found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSlot {
    /// The slot.
    pub slot: Slot,
    /// "boot.slot_suffix on the kernel command line", "slot metadata on the
    /// boot device".
    pub source: String,
}

/// What the preflight found that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The target, as shown to the operator.
    pub device: &'a str,
    /// The disk's table against the layout's.
    pub plan: &'a Plan,
    /// The layout's filesystems.
    pub filesystems: &'a [Fs],
    /// SoC family, when known.
    pub soc: Option<Soc>,
    /// An interrupted install recorded on the disk.
    pub journal: Option<&'a Record>,
    /// The slot the board runs, when known.
    pub running: Option<&'a RunningSlot>,
    /// Why the boot device's table is not the layout's, when it is not.
    pub boot_mismatch: Option<&'a str>,
}

/// What becomes of DATA (or UDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataHandling {
    /// Not touched (update mode, or `--keep-data` with DATA in place).
    InPlace,
    /// Saved before the GPT is written, re-created and restored.
    SaveAndRestore,
    /// Re-created empty.
    Recreate,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Initial install or update.
    pub mode: InstallMode,
    /// Why, for the operator.
    pub why: String,
    /// The slot an update writes (slot A in an initial install).
    pub target: Slot,
    /// The interrupted install this run would finish (confirmed only when
    /// it installs the same content, see [`resume`]).
    pub journal: Option<Record>,
    /// What becomes of DATA; `None` when the layout has none.
    pub data: Option<DataHandling>,
    /// Filesystems this run creates (unless an earlier run finished them).
    pub create: Vec<String>,
    /// What is on the disk now and will be lost: `NAME (what it holds)`.
    /// Empty in an update, which erases only its own slot.
    pub erased: Vec<String>,
}

/// Why the install is refused. Nothing has been written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `--mode` contradicts the interrupted install on the disk.
    #[error("{device} records an interrupted {recorded:?} install; --mode {asked:?} would not finish it (use --restart to start over)")]
    ModeConflict {
        /// The target.
        device: String,
        /// The journal's mode.
        recorded: InstallMode,
        /// The mode asked for.
        asked: InstallMode,
    },
    /// Update mode with a layout that is not in place.
    #[error("update mode needs the layout in place on {0}; it is not (see the plan): install with --mode initial")]
    NotInPlace(String),
    /// Update mode with a one-slot layout.
    #[error("update mode needs two slots (APP and APP_b); the layout has one")]
    OneSlot,
    /// Update mode on T210.
    #[error("T210 boards have no A/B boot slots: install with --mode initial")]
    NoBootSlots,
    /// Update mode where the release moved the boot partitions.
    #[error("update mode cannot move boot partitions: {0}; install with --mode initial")]
    BootPartitionsMoved(String),
    /// Update mode without knowing the running slot.
    #[error("update mode needs to know which slot the board runs (boot.slot_suffix= or slot metadata); none found")]
    RunningSlotUnknown,
    /// An initial install would re-create a DATA that holds a filesystem,
    /// and the operator did not say what becomes of it.
    #[error("{name} holds {what}, which this initial install would erase: give --keep-data to keep it (or --discard-data to erase it)")]
    DataWouldBeLost {
        /// DATA or UDA.
        name: String,
        /// What it holds.
        what: String,
    },
}

impl Refusal {
    /// True when the command line asked for something contradictory (exit
    /// code 2) rather than for something this disk cannot have (3).
    pub fn is_usage(&self) -> bool {
        matches!(self, Refusal::ModeConflict { .. })
    }
}

/// Decides; see the module documentation for the rules.
pub fn decide(f: &Facts<'_>, req: &Request) -> Result<Decision, Refusal> {
    let journal = f.journal.filter(|_| !req.restart);
    let (mode, why) = choose_mode(f, req, journal)?;
    let target = match mode {
        InstallMode::Initial => Slot::A,
        InstallMode::Update => update_target(f, journal)?,
    };
    let data = data_handling(f, journal, req, mode);
    if data == Some(DataHandling::Recreate) && !req.discard_data && journal.is_none() {
        if let Some((name, what)) = data_in_use(f) {
            return Err(Refusal::DataWouldBeLost { name, what });
        }
    }
    Ok(Decision {
        mode,
        why,
        target,
        journal: journal.cloned(),
        data,
        create: created(f.filesystems, mode, target, data),
        erased: match mode {
            InstallMode::Initial => erased(f, data),
            InstallMode::Update => Vec::new(),
        },
    })
}

fn choose_mode(
    f: &Facts<'_>,
    req: &Request,
    journal: Option<&Record>,
) -> Result<(InstallMode, String), Refusal> {
    let asked = match req.mode {
        ModeRequest::Auto => None,
        ModeRequest::Initial => Some(InstallMode::Initial),
        ModeRequest::Update => Some(InstallMode::Update),
    };
    match (journal, asked) {
        (Some(r), Some(m)) if m != r.mode => Err(Refusal::ModeConflict {
            device: f.device.to_owned(),
            recorded: r.mode,
            asked: m,
        }),
        (Some(r), _) => Ok((r.mode, "resuming the interrupted install".into())),
        (None, Some(m)) => Ok((m, "--mode".into())),
        (None, None) => Ok(auto_mode(f)),
    }
}

/// `auto`: update when everything an update needs is there.
fn auto_mode(f: &Facts<'_>) -> (InstallMode, String) {
    if !f.plan.in_place {
        return (InstallMode::Initial, "the layout is not in place".into());
    }
    if f.soc == Some(Soc::T210) || !has_second_slot(f.filesystems) {
        return (InstallMode::Initial, "the layout has no second slot".into());
    }
    if let Some(why) = f.boot_mismatch {
        return (InstallMode::Initial, why.to_owned());
    }
    let Some(running) = f.running else {
        return (InstallMode::Initial, "no active slot found".into());
    };
    if holds_root_filesystem(f.plan, f.filesystems, running.slot) {
        (
            InstallMode::Update,
            format!(
                "the layout is in place and the board runs slot {} ({})",
                running.slot.letter(),
                running.source
            ),
        )
    } else {
        (
            InstallMode::Initial,
            format!(
                "the active slot {} has no root filesystem",
                running.slot.letter()
            ),
        )
    }
}

fn has_second_slot(fs: &[Fs]) -> bool {
    fs.iter().any(|f| f.role == FsRole::Slot(Slot::B))
}

/// The slot's partition holds a filesystem: ext4, or a LUKS container
/// when it is a `crypt-` one (what is inside is known only with the key).
fn holds_root_filesystem(plan: &Plan, fs: &[Fs], slot: Slot) -> bool {
    fs.iter()
        .find(|f| f.role == FsRole::Slot(slot))
        .is_some_and(|f| holds_filesystem(plan, f))
}

fn holds_filesystem(plan: &Plan, f: &Fs) -> bool {
    plan.partitions
        .iter()
        .find(|p| p.name == f.name)
        .and_then(|p| p.content.as_ref())
        .is_some_and(|c| matches!(c, Content::Ext(_)) || (f.crypt && *c == Content::Luks))
}

/// The slot an update writes: the journal's, else the one the board does
/// not run.
fn update_target(f: &Facts<'_>, journal: Option<&Record>) -> Result<Slot, Refusal> {
    if !f.plan.in_place {
        return Err(Refusal::NotInPlace(f.device.to_owned()));
    }
    if !has_second_slot(f.filesystems) {
        return Err(Refusal::OneSlot);
    }
    if f.soc == Some(Soc::T210) {
        return Err(Refusal::NoBootSlots);
    }
    if let (None, Some(why)) = (journal, f.boot_mismatch) {
        return Err(Refusal::BootPartitionsMoved(why.to_owned()));
    }
    match (journal, f.running) {
        (Some(r), _) => Ok(if r.target_slot == 1 { Slot::B } else { Slot::A }),
        (None, Some(running)) => Ok(running.slot.other()),
        (None, None) => Err(Refusal::RunningSlotUnknown),
    }
}

fn data_handling(
    f: &Facts<'_>,
    journal: Option<&Record>,
    req: &Request,
    mode: InstallMode,
) -> Option<DataHandling> {
    let data = f.filesystems.iter().find(|x| x.role == FsRole::Data)?;
    // The interrupted install (not ignored with --restart) staged a copy:
    // restored from it (or already).
    let staged = journal.is_some_and(|r| r.stage.is_some());
    if mode == InstallMode::Initial && req.keep_data && staged {
        return Some(DataHandling::SaveAndRestore);
    }
    let now = f.plan.partitions.iter().find(|p| p.name == data.name);
    let has_fs = holds_filesystem(f.plan, data);
    let in_place = mode == InstallMode::Update
        || (req.keep_data && has_fs && now.is_some_and(|p| p.action == PartitionAction::Keep));
    Some(if in_place {
        DataHandling::InPlace
    } else if mode == InstallMode::Initial && req.keep_data && has_fs && now.is_some() {
        // Not in place with a filesystem: the table still has the old DATA
        // (a resumed install had not written it yet).
        DataHandling::SaveAndRestore
    } else {
        DataHandling::Recreate
    })
}

/// DATA's name and what it holds, when it holds a filesystem (not zeros,
/// nor bytes nothing recognises).
fn data_in_use(f: &Facts<'_>) -> Option<(String, String)> {
    let data = f.filesystems.iter().find(|x| x.role == FsRole::Data)?;
    let c = f
        .plan
        .partitions
        .iter()
        .find(|p| p.name == data.name)?
        .content
        .as_ref()?;
    (!matches!(c, Content::Empty | Content::Unknown)).then(|| (data.name.clone(), c.describe()))
}

/// The filesystems a run of `mode` creates.
fn created(fs: &[Fs], mode: InstallMode, target: Slot, data: Option<DataHandling>) -> Vec<String> {
    fs.iter()
        .filter(|f| match (mode, f.role) {
            (InstallMode::Update, FsRole::Slot(s)) => s == target,
            (InstallMode::Update, _) => false,
            (InstallMode::Initial, FsRole::Data) => data != Some(DataHandling::InPlace),
            (InstallMode::Initial, _) => true,
        })
        .map(|f| f.name.clone())
        .collect()
}

/// What an initial install destroys: the layout's filesystems that hold
/// something now (but a DATA kept in place), then whatever else the new
/// table loses.
fn erased(f: &Facts<'_>, data: Option<DataHandling>) -> Vec<String> {
    let kept = |x: &Fs| x.role == FsRole::Data && data == Some(DataHandling::InPlace);
    let ours = f.filesystems.iter().filter(|x| !kept(x)).filter_map(|x| {
        let p = f.plan.partitions.iter().find(|p| p.name == x.name)?;
        let c = p.content.as_ref()?;
        (!matches!(c, Content::Empty)).then(|| format!("{} ({})", x.name, c.describe()))
    });
    let others = f
        .plan
        .data_lost()
        .filter(|p| !f.filesystems.iter().any(|x| x.name == p.name))
        .map(|p| {
            format!(
                "{} ({})",
                p.name,
                p.content
                    .as_ref()
                    .map_or("unknown".into(), |c| c.describe())
            )
        });
    ours.chain(others).collect()
}

/// The journal to continue: the decision's, when it records this same
/// content (rootfs, data, layout); `None` (start over) otherwise.
pub fn resume(decision: &Decision, content: &[u8; 32]) -> Option<Record> {
    decision
        .journal
        .as_ref()
        .filter(|r| r.content == *content)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guid::Guid;
    use crate::probe::ExtSuperblock;
    use crate::repartition::{CurrentTable, Extent, PartitionPlan};

    const APP: u32 = 1;

    fn fs() -> Vec<Fs> {
        [
            ("APP", FsRole::Slot(Slot::A)),
            ("APP_b", FsRole::Slot(Slot::B)),
            ("DATA", FsRole::Data),
            ("LOGS", FsRole::Scratch),
        ]
        .iter()
        .enumerate()
        .map(|(i, (n, r))| Fs {
            name: (*n).into(),
            number: APP + i as u32,
            size: 1 << 30,
            role: *r,
            crypt: false,
        })
        .collect()
    }

    fn ext(label: &str) -> Content {
        Content::Ext(ExtSuperblock {
            kind: "ext4",
            uuid: Guid::NIL,
            label: label.into(),
            last_mounted: String::new(),
            size_bytes: 1 << 30,
            ..Default::default()
        })
    }

    /// A plan where every filesystem of `fs()` is kept (or, not in place,
    /// moved) and holds `content(name)`.
    fn plan(in_place: bool, content: impl Fn(&str) -> Option<Content>) -> Plan {
        let extent = |f: &Fs| Extent {
            number: f.number,
            first_lba: 2048 * u64::from(f.number),
            last_lba: 2048 * u64::from(f.number) + 2047,
            type_guid: Guid::NIL,
            unique_guid: None,
        };
        Plan {
            sector_size: 512,
            disk_sectors: 1 << 24,
            current: CurrentTable::None,
            disk_content: None,
            partitions: fs()
                .iter()
                .map(|f| {
                    let c = content(&f.name);
                    PartitionPlan {
                        name: f.name.clone(),
                        action: if in_place {
                            PartitionAction::Keep
                        } else {
                            PartitionAction::Move
                        },
                        current: Some(extent(f)),
                        wanted: Some(extent(f)),
                        changes: Vec::new(),
                        data_lost: !in_place && c.as_ref().is_some_and(|c| *c != Content::Empty),
                        content: c,
                    }
                })
                .collect(),
            header_changes: Vec::new(),
            notes: Vec::new(),
            in_place,
        }
    }

    fn all_ext(name: &str) -> Option<Content> {
        Some(ext(name))
    }

    fn running(slot: Slot) -> RunningSlot {
        RunningSlot {
            slot,
            source: "slot metadata on the boot device".into(),
        }
    }

    fn record(mode: InstallMode, target_slot: u8) -> Record {
        Record::start(mode, target_slot, [7; 32], 1).unwrap()
    }

    struct Row<'a> {
        plan: Plan,
        soc: Option<Soc>,
        journal: Option<Record>,
        running: Option<RunningSlot>,
        boot_mismatch: Option<&'a str>,
        req: Request,
    }

    impl Default for Row<'_> {
        fn default() -> Self {
            Row {
                plan: plan(true, all_ext),
                soc: Some(Soc::T186),
                journal: None,
                running: Some(running(Slot::A)),
                boot_mismatch: None,
                req: Request::default(),
            }
        }
    }

    fn run(r: &Row<'_>) -> Result<Decision, Refusal> {
        run_as(r, &r.req)
    }

    fn run_as(r: &Row<'_>, req: &Request) -> Result<Decision, Refusal> {
        let fs = fs();
        decide(
            &Facts {
                device: "/dev/mmcblk0",
                plan: &r.plan,
                filesystems: &fs,
                soc: r.soc,
                journal: r.journal.as_ref(),
                running: r.running.as_ref(),
                boot_mismatch: r.boot_mismatch,
            },
            req,
        )
    }

    /// The mode tables are about the mode: DATA's fate has its own test.
    fn mode_of(r: &Row<'_>) -> (InstallMode, String, Slot) {
        let req = Request {
            discard_data: true,
            ..r.req
        };
        let d = run_as(r, &req).unwrap();
        (d.mode, d.why, d.target)
    }

    #[test]
    fn a_crypt_slot_holding_luks_is_a_root_filesystem_for_auto() {
        let app = |n: &str| n.starts_with("APP");
        let luks_slots = |n: &str| Some(if app(n) { Content::Luks } else { ext(n) });
        let crypt: Vec<Fs> = fs()
            .into_iter()
            .map(|mut f| {
                if app(&f.name) {
                    f.name = format!("crypt-{}", f.name);
                    f.crypt = true;
                }
                f
            })
            .collect();
        let mut p = plan(true, luks_slots);
        for x in &mut p.partitions {
            if app(&x.name) {
                x.name = format!("crypt-{}", x.name);
            }
        }
        let r = running(Slot::A);
        let facts = Facts {
            device: "/dev/mmcblk0",
            plan: &p,
            filesystems: &crypt,
            soc: Some(Soc::T186),
            journal: None,
            running: Some(&r),
            boot_mismatch: None,
        };
        assert_eq!(auto_mode(&facts).0, InstallMode::Update);
        // LUKS in a slot that is not crypt- is not a root filesystem.
        let plain = fs();
        let p2 = plan(true, luks_slots);
        let (mode, why) = auto_mode(&Facts {
            plan: &p2,
            filesystems: &plain,
            ..facts
        });
        assert_eq!(mode, InstallMode::Initial, "{why}");
    }

    #[test]
    fn auto_picks_update_only_when_everything_is_there() {
        use InstallMode::{Initial, Update};
        let slot_meta =
            "the layout is in place and the board runs slot A (slot metadata on the boot device)";
        let cases: Vec<(Row<'_>, InstallMode, &str, Slot)> = vec![
            (Row::default(), Update, slot_meta, Slot::B),
            (
                Row {
                    running: Some(running(Slot::B)),
                    ..Row::default()
                },
                Update,
                "the layout is in place and the board runs slot B (slot metadata on the boot device)",
                Slot::A,
            ),
            (
                Row {
                    plan: plan(false, all_ext),
                    ..Row::default()
                },
                Initial,
                "the layout is not in place",
                Slot::A,
            ),
            (
                Row {
                    soc: Some(Soc::T210),
                    ..Row::default()
                },
                Initial,
                "the layout has no second slot",
                Slot::A,
            ),
            (
                Row {
                    boot_mismatch: Some("the boot table moved"),
                    ..Row::default()
                },
                Initial,
                "the boot table moved",
                Slot::A,
            ),
            (
                Row {
                    running: None,
                    ..Row::default()
                },
                Initial,
                "no active slot found",
                Slot::A,
            ),
            (
                Row {
                    plan: plan(true, |n| (n != "APP").then(|| ext(n))),
                    ..Row::default()
                },
                Initial,
                "the active slot A has no root filesystem",
                Slot::A,
            ),
        ];
        for (row, mode, why, slot) in cases {
            assert_eq!(mode_of(&row), (mode, why.to_owned(), slot), "{why}");
        }
    }

    #[test]
    fn asked_modes_and_their_refusals() {
        let update = Request {
            mode: ModeRequest::Update,
            ..Request::default()
        };
        let initial = Request {
            mode: ModeRequest::Initial,
            ..Request::default()
        };
        assert_eq!(
            mode_of(&Row {
                req: initial,
                ..Row::default()
            }),
            (InstallMode::Initial, "--mode".into(), Slot::A)
        );
        assert_eq!(
            mode_of(&Row {
                req: update,
                ..Row::default()
            }),
            (InstallMode::Update, "--mode".into(), Slot::B)
        );
        let refused = [
            (
                Row {
                    plan: plan(false, all_ext),
                    req: update,
                    ..Row::default()
                },
                Refusal::NotInPlace("/dev/mmcblk0".into()),
            ),
            (
                Row {
                    soc: Some(Soc::T210),
                    req: update,
                    ..Row::default()
                },
                Refusal::NoBootSlots,
            ),
            (
                Row {
                    boot_mismatch: Some("moved"),
                    req: update,
                    ..Row::default()
                },
                Refusal::BootPartitionsMoved("moved".into()),
            ),
            (
                Row {
                    running: None,
                    req: update,
                    ..Row::default()
                },
                Refusal::RunningSlotUnknown,
            ),
        ];
        for (row, want) in refused {
            assert_eq!(run(&row).unwrap_err(), want);
            assert!(!want.is_usage());
        }
        // A layout with one slot.
        let one: Vec<Fs> = fs().into_iter().filter(|f| f.name != "APP_b").collect();
        let p = plan(true, all_ext);
        let err = decide(
            &Facts {
                device: "/dev/mmcblk0",
                plan: &p,
                filesystems: &one,
                soc: Some(Soc::T194),
                journal: None,
                running: None,
                boot_mismatch: None,
            },
            &update,
        )
        .unwrap_err();
        assert_eq!(err, Refusal::OneSlot);
    }

    #[test]
    fn an_interrupted_install_is_finished_in_its_mode_and_slot() {
        let j = record(InstallMode::Update, 0);
        let d = run(&Row {
            journal: Some(j.clone()),
            running: Some(running(Slot::A)),
            ..Row::default()
        })
        .unwrap();
        // The journal's slot wins over "the other one than the running".
        assert_eq!(
            (d.mode, d.why.as_str(), d.target),
            (
                InstallMode::Update,
                "resuming the interrupted install",
                Slot::A
            )
        );
        assert_eq!(d.journal, Some(j.clone()));
        // ... even with the boot table moved (it was checked when it started).
        assert!(run(&Row {
            journal: Some(j.clone()),
            boot_mismatch: Some("moved"),
            ..Row::default()
        })
        .is_ok());
        // Asking for the other mode is a usage error.
        let err = run(&Row {
            journal: Some(j.clone()),
            req: Request {
                mode: ModeRequest::Initial,
                ..Request::default()
            },
            ..Row::default()
        })
        .unwrap_err();
        assert!(err.is_usage(), "{err}");
        // --restart forgets it.
        let d = run(&Row {
            journal: Some(j),
            req: Request {
                restart: true,
                ..Request::default()
            },
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.journal, None);
        assert_eq!(
            d.why,
            "the layout is in place and the board runs slot A (slot metadata on the boot device)"
        );
    }

    #[test]
    fn resume_only_the_same_content() {
        let d = run(&Row {
            journal: Some(record(InstallMode::Initial, 0)),
            ..Row::default()
        })
        .unwrap();
        assert!(resume(&d, &[7; 32]).is_some());
        assert!(resume(&d, &[8; 32]).is_none());
    }

    #[test]
    fn what_is_created_and_what_becomes_of_data() {
        let keep = Request {
            keep_data: true,
            mode: ModeRequest::Initial,
            ..Request::default()
        };
        let initial = Request {
            mode: ModeRequest::Initial,
            discard_data: true,
            ..Request::default()
        };
        let names = |d: &Decision| d.create.join(" ");
        // Update: only the target slot, DATA untouched, nothing listed as erased.
        let d = run(&Row::default()).unwrap();
        assert_eq!(
            (names(&d), d.data, d.erased.len()),
            ("APP_b".into(), Some(DataHandling::InPlace), 0)
        );
        // Initial, in place, --keep-data: DATA stays and is not erased.
        let d = run(&Row {
            req: keep,
            ..Row::default()
        })
        .unwrap();
        assert_eq!(names(&d), "APP APP_b LOGS");
        assert_eq!(d.data, Some(DataHandling::InPlace));
        assert!(
            d.erased.iter().all(|e| !e.starts_with("DATA")),
            "{:?}",
            d.erased
        );
        // Initial with DATA moving: saved and restored; re-created without --keep-data.
        let moved = plan(false, all_ext);
        let d = run(&Row {
            plan: moved.clone(),
            req: keep,
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::SaveAndRestore));
        assert_eq!(names(&d), "APP APP_b DATA LOGS");
        assert_eq!(
            d.erased,
            [
                "APP (ext4 'APP')",
                "APP_b (ext4 'APP_b')",
                "DATA (ext4 'DATA')",
                "LOGS (ext4 'LOGS')"
            ]
        );
        let d = run(&Row {
            plan: moved.clone(),
            req: initial,
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::Recreate));
        // Not without being told: a DATA with a filesystem is never erased
        // silently.
        let silent = Request {
            mode: ModeRequest::Initial,
            ..Request::default()
        };
        let refused = run(&Row {
            plan: moved.clone(),
            req: silent,
            ..Row::default()
        })
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "DATA holds ext4 'DATA', which this initial install would erase: give --keep-data to keep it (or --discard-data to erase it)"
        );
        assert!(!refused.is_usage());
        // Resuming before the table was written: the old DATA is still
        // there, saved again.
        let d = run(&Row {
            plan: moved,
            req: keep,
            journal: Some(record(InstallMode::Initial, 0)),
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::SaveAndRestore));
        // Resuming after the table was written, with a copy staged: restored
        // from it (not "kept as it is", though the new DATA has a filesystem).
        let mut staged = record(InstallMode::Initial, 0);
        staged.stage = Some(crate::install::journal::StageRecord {
            partition: "APP_b".into(),
            offset: 0,
            len: 1,
            sha256: [0; 32],
            restored: false,
        });
        let d = run(&Row {
            plan: plan(true, all_ext),
            req: keep,
            journal: Some(staged.clone()),
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::SaveAndRestore));
        assert!(d.create.contains(&"DATA".to_owned()));
        // ... nor with --restart, which ignores the journal (the preflight
        // refuses that while the copy is the only one).
        let d = run(&Row {
            plan: plan(true, all_ext),
            req: Request {
                restart: true,
                ..keep
            },
            journal: Some(staged.clone()),
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::InPlace));
        // ... but not without --keep-data (another install's content).
        let d = run(&Row {
            plan: plan(true, all_ext),
            req: initial,
            journal: Some(staged),
            ..Row::default()
        })
        .unwrap();
        assert_ne!(d.data, Some(DataHandling::SaveAndRestore));
        // An empty DATA is neither saved nor listed as erased.
        let d = run(&Row {
            plan: plan(false, |n| (n != "DATA").then(|| ext(n))),
            req: keep,
            ..Row::default()
        })
        .unwrap();
        assert_eq!(d.data, Some(DataHandling::Recreate));
        assert!(d.erased.iter().all(|e| !e.starts_with("DATA")));
    }
}
