//! The write plan: from the entries selected for this board and what the
//! devices hold, every write, in order, with its bytes identified by
//! SHA-256, validated before the first one is made (docs/spec/bup-format.md
//! §4.3–4.9, §5 "REC ordering").
//!
//! Which partitions are written (§4.3): a payload entry goes to the boot
//! partition of its name, else to the user-area partition of its name. In
//! update mode only the target slot's copy of an A/B pair is written, and
//! partitions without a second copy are left alone; `--initialize` writes
//! both copies and the single ones too.
//!
//! In which order (§4.4):
//!
//! ```text
//! T186/T194  [table] … other partitions …, mb2, BCT ×3 (backups first), mb1,
//!            then the other slot's mb1 (it must match the BR-BCT), then SMD, SMD_b
//! T210       VER_b, last BCT copy, backups (-1 / _R), middle BCT copies, first
//!            BCT copy, primaries, NVC, VER (the commit marker)
//! ```
//!
//! The order's dependencies (§4.4, §4.2 step 16; cboot's table: the BCT
//! after mb2, mb1 after the BR-BCT it is checked against) are checked on the
//! finished plan, before anything is written: a BCT write needs every copy
//! of mb1 written after it (in update mode the other slot's too, REF's
//! `mb1_other`), and mb2 written before it. REF writes the BCT and only
//! then fails on a missing mb1; we refuse up front ([`check_entries`] for
//! the payload alone, as `bup check` without a layout does).
//!
//! Nothing here touches a device: current contents come in an
//! [`Inventory`], and payload data through a reader.

#![deny(clippy::indexing_slicing)]

use super::bct::{self, BctError};
use super::board::Slot;
use super::bootgpt::{self, BootGptError};
use super::device::{UserArea, UserPartition};
use super::payload::{Payload, PayloadEntry, PayloadFormat};
use super::smd::{self, Redundancy, Smd};
use super::tnspec::Selection;
use super::ver::{self, VersionError};
use super::BootMedium;
use crate::bytes::hex;
use crate::guid::Guid;
use crate::layout::{BootPartition, Soc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

/// Largest entry read into memory whole (BCT, VER); everything else is
/// streamed. The T210 BCT partition is 1 MiB.
pub const MAX_IN_MEMORY: u64 = 1 << 20;
/// Label of the two steps that write the boot device's partition table.
pub const TABLE: &str = "partition table";

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    /// Both slots, the single partitions, the boot device's partition table
    /// (T186/T194) and fresh slot metadata with slot A active. On T210 this
    /// also forces the version check (REF's explicit `-i`).
    Initialize,
    /// One slot's copies (T210: every partition, it has no slots), and, if
    /// `activate`, slot metadata switched to that slot.
    Update {
        /// The slot written.
        slot: Slot,
        /// Mark it active for the next boot.
        activate: bool,
    },
}

/// The boot device as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootTargets {
    /// eMMC or SPI.
    pub medium: BootMedium,
    /// The devices making up the linear boot device: label and size.
    pub devices: Vec<(String, u64)>,
    /// The partition table in force (the layout's when initializing, the
    /// device's when updating).
    pub partitions: Vec<BootPartition>,
    /// Where that table came from, for messages.
    pub source: String,
}

impl BootTargets {
    /// Size of the linear boot device.
    pub fn len(&self) -> u64 {
        self.devices.iter().map(|d| d.1).sum()
    }

    /// True when there is no boot device.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partition with this exact name (first match, as REF).
    pub fn get(&self, name: &str) -> Option<&BootPartition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The device holding linear offset `pos`, and the offset on it.
    fn locate(&self, pos: u64) -> Option<(usize, u64)> {
        let mut start = 0;
        for (i, (_, size)) in self.devices.iter().enumerate() {
            if pos < start + size {
                return Some((i, pos - start));
            }
            start += size;
        }
        None
    }
}

/// What the devices hold now, as far as the checks need it. Read by
/// `exec::survey`; `None` fields were not there or not readable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The valid partition table on the boot device, if any.
    pub table: Option<Vec<BootPartition>>,
    /// The first bytes of `SMD` and `SMD_b`.
    pub smd: [Option<Vec<u8>>; 2],
    /// The start of the BCT partition.
    pub bct: Option<Vec<u8>>,
    /// `VER` and `VER_b` (T210).
    pub ver: [Option<Vec<u8>>; 2],
    /// CRC-32 of the whole `NVC` partition and of its backup (T210).
    pub nvc_crc: [Option<u32>; 2],
}

/// Everything the planner needs.
pub struct PlanInput<'a> {
    /// SoC family.
    pub soc: Soc,
    /// What to write.
    pub mode: BootMode,
    /// The parsed payload.
    pub payload: &'a Payload,
    /// The entries chosen for this board.
    pub selection: &'a Selection,
    /// The boot device.
    pub boot: &'a BootTargets,
    /// The user-area partitions.
    pub user: &'a UserArea,
    /// Every partition name of the layout, when there is one: an entry whose
    /// partition the layout does not have is skipped (REF's
    /// `all-partitions.conf`); without a layout every entry needs a target.
    pub layout_names: Option<&'a [String]>,
    /// Current contents; `None` to plan without devices (`bup check`), which
    /// skips the checks that need them.
    pub inventory: Option<&'a Inventory>,
}

/// Where a step writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteArea {
    /// The linear boot device.
    Boot,
    /// A user-area partition.
    User,
}

/// The bytes a step writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepData {
    /// A payload entry's data, streamed from the payload file.
    Entry {
        /// Entry index.
        index: u32,
        /// Its offset in the payload file.
        offset: u64,
        /// Its length.
        length: u64,
    },
    /// Bytes made by the plan (slot metadata, partition table).
    Bytes {
        /// The bytes.
        #[serde(skip)]
        bytes: Vec<u8>,
    },
}

impl StepData {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            StepData::Entry { length, .. } => *length,
            StepData::Bytes { bytes } => bytes.len() as u64,
        }
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One write: `data` at `at` within a partition, then zeros up to `span`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootStep {
    /// What it writes, for people: `mb1_b`, `BCT (block 1)`, `BCT-63`, `SMD`.
    pub label: String,
    /// The partition written.
    pub partition: String,
    /// Boot device or user area.
    pub area: WriteArea,
    /// Start of the partition: on the linear boot device, or in its node /
    /// image file.
    pub partition_offset: u64,
    /// Size of the partition.
    pub partition_size: u64,
    /// Offset of the write within the partition.
    pub at: u64,
    /// Bytes covered from `at`: the data, then zeros.
    pub span: u64,
    /// The data.
    pub data: StepData,
    /// SHA-256 of the data, hex.
    pub sha256: String,
    /// The device written (path), for reports.
    pub device: String,
    /// Offset on that device.
    pub device_offset: u64,
}

/// A selected entry that is not written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotWritten {
    /// Partition name.
    pub partition: String,
    /// Why.
    pub reason: String,
}

/// The complete, validated plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootPlan {
    /// SoC family.
    pub soc: Soc,
    /// eMMC or SPI.
    pub medium: BootMedium,
    /// What is written.
    pub mode: BootMode,
    /// The board's TNSPEC.
    pub tnspec: String,
    /// Its compatible spec.
    pub compat: Option<String>,
    /// Partition table and partitions, in write order.
    pub steps: Vec<BootStep>,
    /// Slot metadata (SMD, then SMD_b), written last, after everything else
    /// was verified; empty when the metadata is left alone.
    pub slot_metadata: Vec<BootStep>,
    /// Selected entries not written.
    pub not_written: Vec<NotWritten>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

/// What `bup write` says about T234 boot firmware (t234-boot-chain.md §2.3:
/// the QSPI is hidden from a UEFI-booted kernel).
pub const T234_BY_CAPSULE: &str = "T234 boot firmware is on QSPI, which Linux does not see after \
     a UEFI boot; UEFI updates it from a capsule staged in the ESP (EFI/UpdateCapsule/TEGRA_BL.Cap \
     and OsIndications), as the T234 install does. Check a capsule or payload with bup check";

fn soc_refusal(soc: Soc) -> String {
    match soc {
        Soc::T234 => format!("bup write does not write T234 boot firmware: {T234_BY_CAPSULE}"),
        other => format!("writing boot partitions of {other:?} boards is not supported yet"),
    }
}

/// Why there is no plan. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum BootPlanError {
    /// An R35+ (T234) payload.
    #[error("bup write does not write NVIDIA__BLOB__V3 (T234) payloads: {T234_BY_CAPSULE}")]
    V3Payload,
    /// A SoC we cannot write for.
    #[error("{}", soc_refusal(*.0))]
    Soc(Soc),
    /// A UEFI capsule was given.
    #[error(
        "{0} is a UEFI capsule: bup write writes boot partitions from a BUP; {T234_BY_CAPSULE}"
    )]
    Capsule(String),
    /// Board-specific partitions without an entry for this board (§2.7).
    #[error("missing entries for partition(s): {} for TNSPEC {tnspec}", names.join(", "))]
    MissingEntries {
        /// The partitions.
        names: Vec<String>,
        /// The board.
        tnspec: String,
    },
    /// No entry at all for this board.
    #[error("no payload entry applies to TNSPEC {0}; refusing to write (and to switch slots)")]
    NothingSelected(String),
    /// An entry's partition exists nowhere.
    #[error("cannot locate partition {partition}: not in the boot partition table ({boot}) nor in the user area ({user})")]
    NoTarget {
        /// Partition name.
        partition: String,
        /// Where boot partitions came from.
        boot: String,
        /// Where user partitions came from.
        user: String,
    },
    /// An entry larger than its partition.
    #[error("entry {entry} of {length} bytes does not fit partition {partition} of {size} bytes")]
    TooLarge {
        /// Entry name.
        entry: String,
        /// Target partition.
        partition: String,
        /// Entry length.
        length: u64,
        /// Partition size.
        size: u64,
    },
    /// A boot partition outside the device or across boot0/boot1.
    #[error("boot partition {0} is outside the boot device or crosses from boot0 into boot1")]
    BadBootPartition(String),
    /// Two steps write the same bytes.
    #[error("{0} and {1} would write the same bytes on {2}")]
    Overlap(String, String, String),
    /// The BCT cannot be written.
    #[error("BCT: {0}")]
    Bct(#[from] BctError),
    /// The boot device's table cannot be written.
    #[error("boot partition table: {0}")]
    Table(#[from] BootGptError),
    /// A write the order depends on cannot be made (module doc): `entry`
    /// needs `missing`, and why.
    #[error("{entry} needs {missing}: {reason}; nothing was written")]
    Dependency {
        /// The write that depends on another.
        entry: String,
        /// What it needs and the plan lacks (names the entry or partition).
        missing: String,
        /// Why it needs it.
        reason: String,
    },
    /// T210: a partition of the fixed update order has no entry or no
    /// partition.
    #[error("payload or partition not found for {0} (T210 updates need every partition of the fixed order)")]
    T210Order(String),
    /// T210 version check.
    #[error("{0}")]
    Version(#[from] VersionError),
    /// No usable slot metadata.
    #[error("loading slot metadata: {0}")]
    SlotMetadata(String),
    /// Reading the payload failed.
    #[error("reading payload entry {entry}: {source}")]
    Read {
        /// Entry name.
        entry: String,
        /// The error.
        source: io::Error,
    },
}

/// REF's name of a partition's other copy (§4.3): `_b` on T186/T194; on
/// T210 `-1`, except `NVC_R` (SPI) / `NVC-1` and `VER_b`.
pub fn other_copy(soc: Soc, medium: BootMedium, name: &str) -> String {
    match (soc, name) {
        (Soc::T210, "NVC") if medium == BootMedium::Spi => "NVC_R".into(),
        (Soc::T210, "VER") => "VER_b".into(),
        (Soc::T210, _) => format!("{name}-1"),
        _ => format!("{name}_b"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    Boot(&'a BootPartition),
    User(&'a UserPartition),
}

impl Place<'_> {
    fn name(&self) -> &str {
        match self {
            Place::Boot(p) => &p.name,
            Place::User(p) => &p.name,
        }
    }
    fn size(&self) -> u64 {
        match self {
            Place::Boot(p) => p.size,
            Place::User(p) => p.size,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Task<'a> {
    entry: &'a PayloadEntry,
    place: Place<'a>,
}

/// T210 fixed order items (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Part(&'static str),
    BctLast,
    BctMiddle,
    BctFirst,
}

const T210_EMMC: &[Item] = {
    use Item::*;
    &[
        Part("VER_b"),
        BctLast,
        Part("NVC-1"),
        Part("PT-1"),
        Part("TBC-1"),
        Part("RP1-1"),
        Part("EBT-1"),
        Part("WB0-1"),
        Part("BPF-1"),
        Part("DTB-1"),
        Part("TOS-1"),
        Part("EKS-1"),
        Part("LNX-1"),
        BctMiddle,
        BctFirst,
        Part("PT"),
        Part("TBC"),
        Part("RP1"),
        Part("EBT"),
        Part("WB0"),
        Part("BPF"),
        Part("DTB"),
        Part("TOS"),
        Part("EKS"),
        Part("LNX"),
        Part("NVC"),
        Part("VER"),
    ]
};

const T210_SPI: &[Item] = {
    use Item::*;
    &[
        Part("VER_b"),
        BctLast,
        Part("NVC_R"),
        BctMiddle,
        BctFirst,
        Part("PT"),
        Part("TBC"),
        Part("RP1"),
        Part("EBT"),
        Part("WB0"),
        Part("BPF"),
        Part("DTB"),
        Part("TOS"),
        Part("EKS"),
        Part("LNX"),
        Part("NVC"),
        Part("VER"),
    ]
};

/// SHA-256 of a reader's next `len` bytes, in bounded memory.
pub fn sha256_of<R: Read>(r: &mut R, len: u64) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or(&mut []);
        r.read_exact(chunk)?;
        h.update(&*chunk);
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

struct Planner<'a, R> {
    input: &'a PlanInput<'a>,
    reader: &'a mut R,
    hashes: BTreeMap<u32, String>,
    steps: Vec<BootStep>,
    not_written: Vec<NotWritten>,
    warnings: Vec<String>,
}

/// Partitions whose write depends on the BR-BCT's: mb1, then the other
/// slot's (bup-format.md §4.4).
const MB1: [&str; 2] = ["mb1", "mb1_b"];
/// Partitions written before the BR-BCT (§4.4).
const MB2: [&str; 2] = ["mb2", "mb2_b"];

/// The dependencies the payload alone must meet (T186/T194): a BCT entry
/// for this board needs an mb1 entry for it, written after the BCT. REF
/// writes the BCT, then fails on the missing mb1 with the slot half
/// updated; this is refused before anything is written.
pub fn check_entries(
    soc: Soc,
    payload: &Payload,
    selection: &Selection,
) -> Result<(), BootPlanError> {
    if !matches!(soc, Soc::T186 | Soc::T194) {
        return Ok(());
    }
    let selected = |name: &str| {
        selection.selected.iter().any(|s| {
            payload
                .entries
                .get(s.index as usize)
                .is_some_and(|e| e.name_lossy() == name)
        })
    };
    if selected("BCT") && !selected("mb1") {
        return Err(BootPlanError::Dependency {
            entry: "BCT".into(),
            missing: "an mb1 entry".into(),
            reason: "each slot's mb1 is checked against the BR-BCT and is written right after it (tegra-bootloader-update writes the BCT and then fails on the missing mb1)".into(),
        });
    }
    Ok(())
}

/// Makes the plan. `payload` reads the payload file (entry data is hashed,
/// and BCT and VER entries read, here); `guid` gives the GUIDs of a new
/// boot partition table.
pub fn plan<R: Read + Seek>(
    input: &PlanInput<'_>,
    payload: &mut R,
    guid: &mut dyn FnMut() -> Guid,
) -> Result<BootPlan, BootPlanError> {
    let sel = input.selection;
    if input.payload.header.format == PayloadFormat::V3 {
        return Err(BootPlanError::V3Payload);
    }
    if input.soc == Soc::T234 {
        return Err(BootPlanError::Soc(input.soc));
    }
    if !sel.missing.is_empty() {
        return Err(BootPlanError::MissingEntries {
            names: sel.missing.clone(),
            tnspec: sel.tnspec.clone(),
        });
    }
    if sel.selected.is_empty() {
        return Err(BootPlanError::NothingSelected(sel.tnspec.clone()));
    }
    check_entries(input.soc, input.payload, sel)?;
    let mut p = Planner {
        input,
        reader: payload,
        hashes: BTreeMap::new(),
        steps: Vec::new(),
        not_written: Vec::new(),
        warnings: Vec::new(),
    };
    if input.soc != Soc::T210 && input.mode == BootMode::Initialize {
        p.table(guid)?;
    }
    let tasks = p.tasks()?;
    if input.soc == Soc::T210 {
        p.t210(&tasks)?;
    } else {
        p.t18x(&tasks)?;
    }
    let slot_metadata = p.slot_metadata()?;
    check_overlaps(p.steps.iter().chain(&slot_metadata))?;
    Ok(BootPlan {
        soc: input.soc,
        medium: input.boot.medium,
        mode: input.mode,
        tnspec: sel.tnspec.clone(),
        compat: sel.compat.clone(),
        steps: p.steps,
        slot_metadata,
        not_written: p.not_written,
        warnings: p.warnings,
    })
}

impl<'a, R: Read + Seek> Planner<'a, R> {
    fn mode_writes_both(&self) -> bool {
        self.input.mode == BootMode::Initialize || self.input.soc == Soc::T210
    }

    fn slot(&self) -> Slot {
        match self.input.mode {
            BootMode::Update { slot, .. } => slot,
            BootMode::Initialize => Slot::A,
        }
    }

    /// The tasks of §4.3, in payload order: `(redundant, single, mb1_other)`.
    fn tasks(&mut self) -> Result<Tasks<'a>, BootPlanError> {
        let input = self.input;
        let (soc, medium) = (input.soc, input.boot.medium);
        let mut t = Tasks::default();
        for s in &input.selection.selected {
            let Some(entry) = input.payload.entries.get(s.index as usize) else {
                continue;
            };
            let name = entry.name_lossy().into_owned();
            let name_b = other_copy(soc, medium, &name);
            let boot = |n: &str| input.boot.get(n).map(Place::Boot);
            let (a, b) = match boot(&name) {
                Some(a) => (a, boot(&name_b)),
                None => match input.user.get(&name) {
                    Some(u) => (Place::User(u), input.user.get(&name_b).map(Place::User)),
                    None => {
                        let in_layout = input
                            .layout_names
                            .map_or(true, |names| names.contains(&name));
                        if in_layout {
                            return Err(BootPlanError::NoTarget {
                                partition: name,
                                boot: input.boot.source.clone(),
                                user: input.user.source.clone(),
                            });
                        }
                        self.not_written.push(NotWritten {
                            partition: name,
                            reason: "the layout has no such partition".into(),
                        });
                        continue;
                    }
                },
            };
            let redundant = b.is_some() || (name == "BCT" && matches!(a, Place::Boot(_)));
            let task = |place| Task { entry, place };
            if self.mode_writes_both() {
                if redundant {
                    t.redundant.push(task(a));
                    t.redundant.extend(b.map(task));
                } else {
                    t.single.push(task(a));
                }
            } else if redundant {
                let (this, other) = match (self.slot(), b) {
                    (Slot::B, Some(b)) => (b, Some(a)),
                    (_, b) => (a, b),
                };
                t.redundant.push(task(this));
                if name == "mb1" && matches!(a, Place::Boot(_)) {
                    t.mb1_other = other.map(task);
                }
            } else {
                self.not_written.push(NotWritten {
                    partition: name,
                    reason: "it has no second copy; only --initialize writes it".into(),
                });
            }
        }
        Ok(t)
    }

    /// T186/T194 order: REF's `order_entries`, then the other mb1, then the
    /// single partitions.
    fn t18x(&mut self, t: &Tasks<'a>) -> Result<(), BootPlanError> {
        const LAST: [&str; 5] = ["mb2", "mb2_b", "BCT", "mb1", "mb1_b"];
        let mut has_bct = false;
        for task in t
            .redundant
            .iter()
            .filter(|t| !LAST.contains(&t.place.name()))
        {
            self.write_task(task)?;
        }
        for name in LAST {
            for task in t.redundant.iter().filter(|t| t.place.name() == name) {
                if name == "BCT" {
                    has_bct = true;
                    self.t18x_bct(task)?;
                } else {
                    self.write_task(task)?;
                }
            }
        }
        // mb1 is checked against the BR-BCT: after a BCT write the running
        // slot's mb1 must be the new one too. REF writes it whenever the
        // payload has a BCT (compare-before-write skips it if unchanged);
        // keyed on the entry, not on a change, so a re-run after a power cut
        // between the two still writes it.
        if has_bct {
            if let Some(other) = &t.mb1_other {
                self.write_task(other)?;
            }
        }
        for task in &t.single {
            self.write_task(task)?;
        }
        self.t18x_dependencies()
    }

    /// The order's dependencies on the finished T186/T194 plan (module
    /// doc): after a BCT write, every mb1 copy of the table (update mode:
    /// both slots') is written; every mb2 written comes before the BCT.
    fn t18x_dependencies(&self) -> Result<(), BootPlanError> {
        let boot = self.input.boot;
        let is = |s: &BootStep, name: &str| s.area == WriteArea::Boot && s.partition == name;
        let Some(first_bct) = self.steps.iter().position(|s| is(s, "BCT")) else {
            return Ok(());
        };
        let last_bct = self
            .steps
            .iter()
            .rposition(|s| is(s, "BCT"))
            .unwrap_or(first_bct);
        let update = matches!(self.input.mode, BootMode::Update { .. });
        for name in MB1 {
            // Initializing writes the copies the table has; an update also
            // the other slot's, which must match the new BR-BCT.
            let needed = update || boot.get(name).is_some();
            let after = self.steps.iter().skip(last_bct + 1).any(|s| is(s, name));
            if needed && !after {
                let reason = match boot.get(name) {
                    None => format!(
                        "the boot ROM checks every slot's mb1 against the BR-BCT, and the boot partition table ({}) has no {name}",
                        boot.source
                    ),
                    Some(_) => format!(
                        "the boot ROM checks every slot's mb1 against the BR-BCT, and {name} is not written{}",
                        if self.not_written.iter().any(|n| n.partition == name) {
                            " (it has no second copy in the boot partition table; only --initialize writes it)"
                        } else {
                            ""
                        }
                    ),
                };
                return Err(BootPlanError::Dependency {
                    entry: "BCT".into(),
                    missing: format!("{name} written after it"),
                    reason,
                });
            }
        }
        if let Some(late) = self
            .steps
            .iter()
            .skip(first_bct + 1)
            .find(|s| MB2.iter().any(|n| is(s, n)))
        {
            return Err(BootPlanError::Dependency {
                entry: "BCT".into(),
                missing: format!("{} written before it", late.partition),
                reason: format!(
                    "mb2 is written before the BCT (tegra-bootloader-update's order), but {} has no second copy and would come after it",
                    late.partition
                ),
            });
        }
        Ok(())
    }

    /// T210: the fixed order, then the version check (needs to know which
    /// partitions are written).
    fn t210(&mut self, t: &Tasks<'a>) -> Result<(), BootPlanError> {
        let medium = self.input.boot.medium;
        let all: Vec<Task<'a>> = t.redundant.iter().chain(&t.single).copied().collect();
        let find = |n: &str| all.iter().position(|t| t.place.name() == n);
        let list = match medium {
            BootMedium::Emmc => T210_EMMC,
            BootMedium::Spi => T210_SPI,
        };
        let mut used = vec![false; all.len()];
        let mut order: Vec<(Item, Option<usize>)> = Vec::new();
        for item in list {
            let name = match item {
                Item::Part(n) => n,
                _ => "BCT",
            };
            match find(name) {
                Some(i) => {
                    if let Some(u) = used.get_mut(i) {
                        *u = true;
                    }
                    order.push((*item, Some(i)));
                }
                // EKS is optional (REF 4696c4b).
                None if name.starts_with("EKS") => {}
                None => return Err(BootPlanError::T210Order(name.into())),
            }
        }
        // Partitions outside the fixed list (BMP, RP4, ...). REF appends them
        // after VER; deviation: they go before the final NVC and VER, so VER
        // stays the last write, the marker of a complete update.
        let tail = order.len().saturating_sub(2);
        let extra: Vec<(Item, Option<usize>)> = (0..all.len())
            .filter(|&i| !used.get(i).copied().unwrap_or(true))
            .map(|i| (Item::Part(""), Some(i)))
            .collect();
        order.splice(tail..tail, extra);

        let bct_task = find("BCT").and_then(|i| all.get(i)).copied();
        let copies = match bct_task.map(|t| t.place) {
            Some(Place::Boot(part)) => {
                let len = u64::from(bct_task.map_or(0, |t| t.entry.length));
                Some(bct::t210_copies(medium, len, part.size)?)
            }
            _ => None,
        };
        for (item, i) in order {
            let Some(task) = i.and_then(|i| all.get(i)) else {
                continue;
            };
            let offsets: Vec<(String, u64)> = match (item, &copies) {
                (Item::BctLast, Some(c)) => vec![(bct_copy_name(c.last, medium), c.last)],
                (Item::BctMiddle, Some(c)) => c
                    .middle
                    .iter()
                    .map(|&o| (bct_copy_name(o, medium), o))
                    .collect(),
                (Item::BctFirst, Some(c)) => c
                    .first
                    .iter()
                    .enumerate()
                    .map(|(k, &o)| {
                        let label = if k == 0 {
                            "BCT".into()
                        } else {
                            "BCT (second copy)".into()
                        };
                        (label, o)
                    })
                    .collect(),
                _ => {
                    self.write_task(task)?;
                    continue;
                }
            };
            for (label, at) in offsets {
                let len = u64::from(task.entry.length);
                self.push(task, label, at, len)?;
            }
        }
        self.t210_version(&all)
    }

    fn t210_version(&mut self, all: &[Task<'a>]) -> Result<(), BootPlanError> {
        let Some(ver_task) = all.iter().find(|t| t.place.name() == "VER") else {
            return Ok(());
        };
        let Some(inv) = self.input.inventory else {
            self.warnings
                .push("the T210 version check needs the boot device; not made".into());
            return Ok(());
        };
        let bup = ver::parse(&self.read_entry(ver_task.entry)?);
        let [cur, back] = &inv.ver;
        let parse = |b: &Option<Vec<u8>>| b.as_deref().map(ver::parse).unwrap_or_default();
        let nvc_b = other_copy(Soc::T210, self.input.boot.medium, "NVC");
        let both = all.iter().any(|t| t.place.name() == "NVC")
            && all.iter().any(|t| t.place.name() == nvc_b);
        let nvc_equal = match (both, inv.nvc_crc) {
            (true, [Some(a), Some(b)]) => Some(a == b),
            _ => None,
        };
        let force = self.input.mode == BootMode::Initialize;
        if let Some(w) = ver::t210_check(&bup, &parse(cur), &parse(back), nvc_equal, force)? {
            self.warnings.push(w);
        }
        Ok(())
    }

    /// T186/T194 BCT: three copies, backups first, after the update check.
    fn t18x_bct(&mut self, task: &Task<'a>) -> Result<(), BootPlanError> {
        let Place::Boot(part) = task.place else {
            return self.write_task(task);
        };
        let g = bct::geometry(self.input.boot.medium);
        let len = u64::from(task.entry.length);
        let offsets = bct::copy_offsets(g, len, part.size)?;
        if let (BootMode::Update { .. }, Some(inv)) = (self.input.mode, self.input.inventory) {
            let new = self.read_entry(task.entry)?;
            let current = inv.bct.as_deref().unwrap_or(&[]);
            bct::check_update(self.input.soc, current, &new)?;
        }
        let slot = bct::slot_size(g, len);
        for (at, what) in offsets
            .iter()
            .zip(["block 0, slot 1", "block 1", "block 0, slot 0"])
        {
            self.push(task, format!("BCT ({what})"), *at, slot)?;
        }
        Ok(())
    }

    /// A whole-partition write: the data, then zeros to the end.
    fn write_task(&mut self, task: &Task<'a>) -> Result<(), BootPlanError> {
        let size = task.place.size();
        self.push(task, task.place.name().to_owned(), 0, size)
    }

    /// Adds a step writing `task`'s entry at `at`, clearing `span` bytes.
    fn push(
        &mut self,
        task: &Task<'a>,
        label: String,
        at: u64,
        span: u64,
    ) -> Result<(), BootPlanError> {
        let e = task.entry;
        let length = u64::from(e.length);
        let size = task.place.size();
        if at + length > size || at + span > size {
            return Err(BootPlanError::TooLarge {
                entry: e.display_name(),
                partition: task.place.name().into(),
                length,
                size: size.saturating_sub(at),
            });
        }
        let sha256 = match self.hashes.get(&e.index) {
            Some(h) => h.clone(),
            None => {
                let h = hex(&self.hash_entry(e)?);
                self.hashes.insert(e.index, h.clone());
                h
            }
        };
        let data = StepData::Entry {
            index: e.index,
            offset: u64::from(e.offset),
            length,
        };
        let step = match task.place {
            Place::Boot(p) => self.boot_step(p, label, at, span, data, sha256)?,
            Place::User(u) => user_step(u, label, at, span, data, sha256),
        };
        self.steps.push(step);
        Ok(())
    }

    fn boot_step(
        &self,
        p: &BootPartition,
        label: String,
        at: u64,
        span: u64,
        data: StepData,
        sha256: String,
    ) -> Result<BootStep, BootPlanError> {
        let boot = self.input.boot;
        let bad = || BootPlanError::BadBootPartition(p.name.clone());
        let (dev, start) = boot.locate(p.offset).ok_or_else(bad)?;
        let (dev_end, _) = boot
            .locate((p.offset + p.size).checked_sub(1).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if dev != dev_end {
            return Err(bad());
        }
        Ok(BootStep {
            label,
            partition: p.name.clone(),
            area: WriteArea::Boot,
            partition_offset: p.offset,
            partition_size: p.size,
            at,
            span,
            data,
            sha256,
            device: boot
                .devices
                .get(dev)
                .map(|d| d.0.clone())
                .unwrap_or_default(),
            device_offset: start + at,
        })
    }

    fn hash_entry(&mut self, e: &PayloadEntry) -> Result<[u8; 32], BootPlanError> {
        let read = |r: &mut R| -> io::Result<[u8; 32]> {
            r.seek(SeekFrom::Start(u64::from(e.offset)))?;
            sha256_of(r, u64::from(e.length))
        };
        read(self.reader).map_err(|source| BootPlanError::Read {
            entry: e.display_name(),
            source,
        })
    }

    fn read_entry(&mut self, e: &PayloadEntry) -> Result<Vec<u8>, BootPlanError> {
        let err = |source| BootPlanError::Read {
            entry: e.display_name(),
            source,
        };
        if u64::from(e.length) > MAX_IN_MEMORY {
            return Err(err(io::Error::other(format!(
                "{} bytes is more than the {MAX_IN_MEMORY} read into memory",
                e.length
            ))));
        }
        let mut buf = vec![0u8; e.length as usize];
        self.reader
            .seek(SeekFrom::Start(u64::from(e.offset)))
            .and_then(|_| self.reader.read_exact(&mut buf))
            .map_err(err)?;
        Ok(buf)
    }

    /// `--initialize` (T186/T194): the layout's table, unless the device
    /// already has exactly these partitions (then its GUIDs are kept and a
    /// re-run writes nothing). Written before the partitions, like REF, but
    /// only after the whole plan is validated (REF wrote it first of all).
    fn table(&mut self, guid: &mut dyn FnMut() -> Guid) -> Result<(), BootPlanError> {
        let boot = self.input.boot;
        let len = boot.len();
        let encoded = bootgpt::encode(&boot.partitions, len, guid)?;
        let current = self.input.inventory.and_then(|i| i.table.as_ref());
        if current == Some(&boot.partitions) {
            return Ok(());
        }
        let table = BootPartition {
            name: TABLE.into(),
            offset: bootgpt::entries_offset(len),
            size: len - bootgpt::entries_offset(len),
        };
        let header_at = bootgpt::header_offset(len) - table.offset;
        for (label, at, bytes) in [
            ("partition table (entries)", 0, encoded.entries),
            ("partition table (header)", header_at, encoded.header),
        ] {
            let sha256 = hex(&Sha256::digest(&bytes));
            let span = bytes.len() as u64;
            let data = StepData::Bytes { bytes };
            let step = self.boot_step(&table, label.into(), at, span, data, sha256)?;
            self.steps.push(step);
        }
        Ok(())
    }

    /// The slot metadata steps (§4.9): fresh metadata with slot A active
    /// when initializing; the current metadata with the target slot marked
    /// active when updating with `activate`; nothing otherwise (and on T210).
    fn slot_metadata(&mut self) -> Result<Vec<BootStep>, BootPlanError> {
        if self.input.soc == Soc::T210 {
            return Ok(Vec::new());
        }
        let smd = match self.input.mode {
            BootMode::Initialize => {
                let mut s = Smd::new_full();
                s.mark_active(Slot::A)
                    .map_err(|e| BootPlanError::SlotMetadata(e.to_string()))?;
                s
            }
            BootMode::Update {
                activate: false, ..
            } => return Ok(Vec::new()),
            BootMode::Update { slot, .. } => {
                let Some(inv) = self.input.inventory else {
                    self.warnings
                        .push("slot metadata is read from the boot device; not checked".into());
                    return Ok(Vec::new());
                };
                let copies: Vec<Option<&[u8]>> = inv.smd.iter().map(|c| c.as_deref()).collect();
                let (mut s, _) = smd::first_valid(&copies).map_err(|errs| {
                    BootPlanError::SlotMetadata(format!(
                        "no valid copy in SMD or SMD_b ({})",
                        errs.iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })?;
                if s.redundancy() != Redundancy::Full {
                    self.warnings
                        .push("enabling full A/B redundancy in the slot metadata".into());
                    s.set_full();
                }
                s.mark_active(slot)
                    .map_err(|e| BootPlanError::SlotMetadata(e.to_string()))?;
                s
            }
        };
        let bytes = smd
            .encode()
            .map_err(|e| BootPlanError::SlotMetadata(e.to_string()))?
            .to_vec();
        let mut steps = Vec::new();
        for name in ["SMD", "SMD_b"] {
            if let Some(p) = self.input.boot.get(name) {
                let sha256 = hex(&Sha256::digest(&bytes));
                let data = StepData::Bytes {
                    bytes: bytes.clone(),
                };
                steps.push(self.boot_step(p, name.into(), 0, smd::SMD_LEN as u64, data, sha256)?);
            }
        }
        if steps.is_empty() {
            return Err(BootPlanError::SlotMetadata(format!(
                "the boot partition table ({}) has no SMD partition",
                self.input.boot.source
            )));
        }
        if steps.iter().any(|s| s.partition_size < smd::SMD_LEN as u64) {
            return Err(BootPlanError::SlotMetadata(
                "SMD partition is too small".into(),
            ));
        }
        Ok(steps)
    }
}

#[derive(Debug, Default)]
struct Tasks<'a> {
    redundant: Vec<Task<'a>>,
    single: Vec<Task<'a>>,
    mb1_other: Option<Task<'a>>,
}

/// REF's names of T210 BCT copies: `BCT-<block>`.
fn bct_copy_name(offset: u64, medium: BootMedium) -> String {
    format!("BCT-{}", offset / bct::geometry(medium).block)
}

fn user_step(
    u: &UserPartition,
    label: String,
    at: u64,
    span: u64,
    data: StepData,
    sha256: String,
) -> BootStep {
    BootStep {
        label,
        partition: u.name.clone(),
        area: WriteArea::User,
        partition_offset: u.base,
        partition_size: u.size,
        at,
        span,
        data,
        sha256,
        device: u.path.display().to_string(),
        device_offset: u.base + at,
    }
}

/// No two steps may write the same bytes of a device.
fn check_overlaps<'s>(steps: impl Iterator<Item = &'s BootStep>) -> Result<(), BootPlanError> {
    let mut ranges: Vec<(&str, u64, u64, &str)> = steps
        .map(|s| {
            (
                s.device.as_str(),
                s.device_offset,
                s.device_offset + s.span,
                s.label.as_str(),
            )
        })
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        if let [a, b] = w {
            if a.0 == b.0 && a.2 > b.1 {
                return Err(BootPlanError::Overlap(a.3.into(), b.3.into(), a.0.into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::payload::Builder;
    use super::super::tnspec::select;
    use super::*;
    use crate::bup::fixtures::{nano_emmc_boot as nano_emmc, tx2_boot as tx2};
    use std::io::Cursor;

    pub const TNSPEC: &str = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1";
    const SPEC: &str = "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1";

    fn boot(parts: Vec<BootPartition>) -> BootTargets {
        BootTargets {
            medium: BootMedium::Emmc,
            devices: vec![("boot0".into(), 4 << 20), ("boot1".into(), 4 << 20)],
            partitions: parts,
            source: "test table".into(),
        }
    }

    fn user(names: &[&str]) -> UserArea {
        UserArea {
            partitions: names
                .iter()
                .enumerate()
                .map(|(i, n)| UserPartition {
                    name: n.to_string(),
                    size: 1 << 20,
                    path: "user.img".into(),
                    base: (i as u64 + 1) << 20,
                })
                .collect(),
            source: "test GPT".into(),
        }
    }

    fn bct(len: usize) -> Vec<u8> {
        let mut b = vec![0x42; len];
        b[..4].copy_from_slice(&(len as u32).to_le_bytes());
        b
    }

    fn tx2_payload() -> Builder {
        Builder::new()
            .entry("spe-fw", b"spe", 0, "")
            .entry("mb2", b"mb2", 0, "")
            .entry("mb1", b"mb1 prod", 2, "")
            .entry("BCT", &bct(3584), 0, SPEC)
            .entry("MB1_BCT", b"mb1bct", 0, SPEC)
            .entry("dram-ecc-fw", b"ecc", 0, "")
            .entry("kernel", b"kernel", 0, "")
            .entry("eks", b"eks", 0, "")
            .entry("VER", b"NV3 ...", 0, SPEC)
    }

    struct Case {
        bytes: Vec<u8>,
        payload: Payload,
        selection: Selection,
        boot: BootTargets,
        user: UserArea,
        inventory: Inventory,
    }

    impl Case {
        fn new(b: Builder) -> Case {
            let bytes = b.build();
            let payload = Payload::parse_bytes(&bytes).unwrap();
            let selection = select(&payload.entries, TNSPEC);
            let mut smd = Smd::new_full().encode().unwrap().to_vec();
            smd.resize(4096, 0);
            Case {
                bytes,
                payload,
                selection,
                boot: boot(tx2()),
                user: user(&["kernel", "kernel_b", "eks"]),
                inventory: Inventory {
                    table: Some(tx2()),
                    smd: [Some(smd.clone()), Some(smd)],
                    bct: Some(bct(3584)),
                    ..Default::default()
                },
            }
        }

        fn plan(&self, soc: Soc, mode: BootMode) -> Result<BootPlan, BootPlanError> {
            let input = PlanInput {
                soc,
                mode,
                payload: &self.payload,
                selection: &self.selection,
                boot: &self.boot,
                user: &self.user,
                layout_names: None,
                inventory: Some(&self.inventory),
            };
            let mut n = 0u8;
            plan(&input, &mut Cursor::new(&self.bytes), &mut || {
                n += 1;
                Guid::from_bytes([n; 16])
            })
        }
    }

    fn labels(steps: &[BootStep]) -> Vec<&str> {
        steps.iter().map(|s| s.label.as_str()).collect()
    }

    #[test]
    fn t186_update_of_slot_b_writes_the_b_copies_in_refs_order() {
        let c = Case::new(tx2_payload());
        let p = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true,
                },
            )
            .unwrap();
        assert_eq!(
            labels(&p.steps),
            [
                "spe-fw_b",
                "MB1_BCT_b",
                "kernel_b",
                "VER_b",
                "mb2_b",
                "BCT (block 0, slot 1)",
                "BCT (block 1)",
                "BCT (block 0, slot 0)",
                "mb1_b",
                "mb1"
            ]
        );
        let bcts: Vec<_> = p.steps.iter().filter(|s| s.partition == "BCT").collect();
        assert_eq!(
            bcts.iter().map(|s| s.at).collect::<Vec<_>>(),
            [3584, 16384, 0]
        );
        assert!(bcts.iter().all(|s| s.span == 3584 && s.device == "boot0"));
        // VER_b is in boot1: its offset is on that device.
        let ver = p.steps.iter().find(|s| s.label == "VER_b").unwrap();
        assert_eq!(
            (ver.device.as_str(), ver.device_offset),
            ("boot1", 8257536 - (4 << 20))
        );
        assert_eq!(labels(&p.slot_metadata), ["SMD", "SMD_b"]);
        let StepData::Bytes { bytes } = &p.slot_metadata[0].data else {
            panic!()
        };
        assert_eq!(&bytes[8..18], &[14, b'_', b'a', 7, 1, 15, b'_', b'b', 7, 0]);
        let skipped: Vec<_> = p.not_written.iter().map(|n| n.partition.as_str()).collect();
        assert_eq!(skipped, ["dram-ecc-fw", "eks"]);
        // The kernel goes to the user area, whole partition (zero tail).
        let k = p.steps.iter().find(|s| s.label == "kernel_b").unwrap();
        assert_eq!(
            (k.area, k.span, k.device_offset),
            (WriteArea::User, 1 << 20, 2 << 20)
        );
    }

    #[test]
    fn t186_update_of_slot_a_writes_mb1_b_last() {
        let c = Case::new(tx2_payload());
        let p = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::A,
                    activate: false,
                },
            )
            .unwrap();
        let l = labels(&p.steps);
        assert_eq!(&l[l.len() - 2..], ["mb1", "mb1_b"]);
        assert!(l.contains(&"kernel") && !l.contains(&"kernel_b"));
        assert!(p.slot_metadata.is_empty());
    }

    #[test]
    fn without_a_bct_entry_the_other_mb1_is_left_alone() {
        let c = Case::new(
            Builder::new()
                .entry("mb1", b"x", 2, "")
                .entry("mb2", b"y", 0, ""),
        );
        let p = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true,
                },
            )
            .unwrap();
        assert_eq!(labels(&p.steps), ["mb2_b", "mb1_b"]);
    }

    /// Issue 12 item 6: REF writes the BCT, then fails on the missing mb1
    /// (update mode) with the BR-BCT already changed. Refused up front, in
    /// both modes, naming the missing entry.
    #[test]
    fn a_bct_without_mb1_is_refused_before_anything_is_written() {
        let c = Case::new(Builder::new().entry("mb2", b"mb2", 0, "").entry(
            "BCT",
            &bct(3584),
            0,
            SPEC,
        ));
        for mode in [
            BootMode::Initialize,
            BootMode::Update {
                slot: Slot::B,
                activate: true,
            },
        ] {
            let err = c.plan(Soc::T186, mode).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "BCT needs an mb1 entry: each slot's mb1 is checked against the BR-BCT"
                ),
                "{err}"
            );
        }
        assert!(check_entries(Soc::T186, &c.payload, &c.selection).is_err());
        assert!(check_entries(Soc::T194, &c.payload, &c.selection).is_err());
        // T210's BCT has no mb1 (its fixed order is checked instead).
        assert!(check_entries(Soc::T210, &c.payload, &c.selection).is_ok());
        // Without a BCT, mb1 and mb2 alone are fine (REF).
        let c = Case::new(Builder::new().entry("mb1", b"x", 2, ""));
        assert!(check_entries(Soc::T186, &c.payload, &c.selection).is_ok());
    }

    #[test]
    fn a_bct_update_needs_both_mb1_copies_after_it() {
        // The table has no mb1_b: mb1 has no second copy, so an update would
        // write the BCT and leave both slots' mb1 old.
        let mut c = Case::new(tx2_payload());
        c.boot.partitions.retain(|p| p.name != "mb1_b");
        let update = BootMode::Update {
            slot: Slot::B,
            activate: true,
        };
        let err = c.plan(Soc::T186, update).unwrap_err().to_string();
        assert!(
            err.starts_with("BCT needs mb1 written after it: the boot ROM checks every slot's mb1 against the BR-BCT, and mb1 is not written (it has no second copy"),
            "{err}"
        );
        // Initializing writes the one mb1 the table has, after the BCT.
        let p = c.plan(Soc::T186, BootMode::Initialize).unwrap();
        let l = labels(&p.steps);
        let bct = l.iter().rposition(|s| s.starts_with("BCT")).unwrap();
        assert!(l.iter().position(|s| *s == "mb1").unwrap() > bct, "{l:?}");
    }

    #[test]
    fn mb2_written_after_the_bct_is_refused() {
        // mb2 without a second copy is a single partition: initializing
        // would write it after the BCT (REF's order for singles).
        let mut c = Case::new(tx2_payload());
        c.boot.partitions.retain(|p| p.name != "mb2_b");
        let err = c
            .plan(Soc::T186, BootMode::Initialize)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("BCT needs mb2 written before it: mb2 is written before the BCT"),
            "{err}"
        );
    }

    #[test]
    fn t186_initialize_writes_table_both_slots_then_singles() {
        let mut c = Case::new(tx2_payload());
        c.inventory = Inventory::default(); // blank boot device
        let p = c.plan(Soc::T186, BootMode::Initialize).unwrap();
        assert_eq!(
            labels(&p.steps),
            [
                "partition table (entries)",
                "partition table (header)",
                "spe-fw",
                "spe-fw_b",
                "MB1_BCT",
                "MB1_BCT_b",
                "kernel",
                "kernel_b",
                "VER",
                "VER_b",
                "mb2",
                "mb2_b",
                "BCT (block 0, slot 1)",
                "BCT (block 1)",
                "BCT (block 0, slot 0)",
                "mb1",
                "mb1_b",
                "dram-ecc-fw",
                "eks"
            ]
        );
        let t = &p.steps[1];
        assert_eq!(
            (t.device.as_str(), t.device_offset, t.span),
            ("boot1", (4 << 20) - 512, 92)
        );
        assert_eq!(p.steps[0].device_offset, (4 << 20) - 16896);
        let StepData::Bytes { bytes } = &p.slot_metadata[1].data else {
            panic!()
        };
        assert_eq!(
            &bytes[..22],
            &Smd::decode(bytes).unwrap().encode().unwrap()[..22]
        );
        assert_eq!(bytes[12], 0, "slot A not yet successful");
        // The same table already on the device: not rewritten.
        c.inventory.table = Some(tx2());
        let p = c.plan(Soc::T186, BootMode::Initialize).unwrap();
        assert_eq!(p.steps[0].label, "spe-fw");
    }

    #[test]
    fn bct_update_is_checked_against_the_current_bct() {
        let mut c = Case::new(tx2_payload());
        let mut other = bct(3584);
        other[1700] = 15; // BlockSizeLog2
        c.inventory.bct = Some(other);
        let err = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true,
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("BlockSizeLog2"), "{err}");
        // Initializing does not check (REF).
        assert!(c.plan(Soc::T186, BootMode::Initialize).is_ok());
    }

    #[test]
    fn refusals_before_anything_is_written() {
        let c = Case::new(tx2_payload().entry("kernel-dtb", b"d", 0, SPEC));
        let err = c
            .plan(Soc::T186, BootMode::Initialize)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot locate partition kernel-dtb"),
            "{err}"
        );

        let mut c = Case::new(tx2_payload());
        c.user.partitions[1].size = 4; // kernel_b smaller than the 6-byte kernel
        let err = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true,
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry kernel of 6 bytes does not fit partition kernel_b of 4 bytes"
        );

        let c = Case::new(Builder::new().entry("mb2", b"x", 0, "").entry(
            "BCT",
            b"b",
            0,
            "3310-B00---1-0-jetson-tx2-devkit-mmcblk0p1",
        ));
        assert!(matches!(
            c.plan(Soc::T186, BootMode::Initialize),
            Err(BootPlanError::MissingEntries { .. })
        ));
        let c = Case::new(Builder::new());
        assert!(matches!(
            c.plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true
                }
            ),
            Err(BootPlanError::NothingSelected(_))
        ));
        let mut v3 = tx2_payload();
        v3.format = PayloadFormat::V3;
        v3.version = 0x0103_0622;
        let c = Case::new(v3);
        assert!(matches!(
            c.plan(Soc::T186, BootMode::Initialize),
            Err(BootPlanError::V3Payload)
        ));
        let c = Case::new(tx2_payload());
        assert!(matches!(
            c.plan(Soc::T234, BootMode::Initialize),
            Err(BootPlanError::Soc(_))
        ));

        // No valid slot metadata: nothing to switch.
        let mut c = Case::new(tx2_payload());
        c.inventory.smd = [Some(vec![0; 191]), None];
        let err = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::B,
                    activate: true,
                },
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("loading slot metadata: no valid copy"),
            "{err}"
        );
    }

    #[test]
    fn a_partition_across_boot0_and_boot1_is_refused() {
        let mut c = Case::new(tx2_payload());
        c.boot.partitions[8].offset = (4 << 20) - 4096; // spe-fw
        let err = c
            .plan(
                Soc::T186,
                BootMode::Update {
                    slot: Slot::A,
                    activate: false,
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, BootPlanError::BadBootPartition(ref n) if n == "spe-fw"),
            "{err}"
        );
    }

    #[test]
    fn overlapping_targets_are_refused() {
        let mut c = Case::new(tx2_payload());
        c.user.partitions[1].base = c.user.partitions[0].base + 4096; // kernel_b inside kernel
        let err = c.plan(Soc::T186, BootMode::Initialize).unwrap_err();
        assert!(matches!(err, BootPlanError::Overlap(..)), "{err}");
    }

    #[test]
    fn entries_not_in_the_layout_are_skipped_with_a_note() {
        let c = Case::new(tx2_payload().entry("xusb-fw", b"x", 0, ""));
        let names = vec!["kernel".to_string()];
        let input = PlanInput {
            soc: Soc::T186,
            mode: BootMode::Initialize,
            payload: &c.payload,
            selection: &c.selection,
            boot: &c.boot,
            user: &c.user,
            layout_names: Some(&names),
            inventory: Some(&c.inventory),
        };
        let p = plan(&input, &mut Cursor::new(&c.bytes), &mut || Guid::NIL).unwrap();
        assert!(p.not_written.iter().any(|n| n.partition == "xusb-fw"));
    }

    #[test]
    fn t210_emmc_follows_the_fixed_order_with_ver_last() {
        const NANO: &str = "3448-200-0000-B.0-1-0-jetson-nano-emmc-mmcblk0p1";
        let spec = "3448-200-0000--1-0-jetson-nano-emmc-mmcblk0p1";
        let mut b = Builder::new().entry("BCT", &vec![7u8; 2560], 0, spec);
        for name in ["NVC", "TBC", "EBT", "WB0", "BPF", "TOS", "EKS", "BMP"] {
            b = b.entry(name, name.as_bytes(), 0, "");
        }
        for name in ["RP1", "PT", "DTB", "LNX"] {
            b = b.entry(name, name.as_bytes(), 0, spec);
        }
        b = b.entry("VER", &super::super::ver::tests::ver(7, 3), 0, spec);
        let bytes = b.build();
        let payload = Payload::parse_bytes(&bytes).unwrap();
        let selection = select(&payload.entries, NANO);
        let boot = boot(nano_emmc());
        let user = user(&[
            "DTB", "DTB-1", "TOS", "TOS-1", "EKS", "EKS-1", "LNX", "LNX-1", "BMP",
        ]);
        let old = super::super::ver::tests::ver(6, 1);
        let inventory = Inventory {
            ver: [Some(old.clone()), Some(old)],
            nvc_crc: [Some(1), Some(1)],
            ..Default::default()
        };
        let input = PlanInput {
            soc: Soc::T210,
            mode: BootMode::Update {
                slot: Slot::A,
                activate: true,
            },
            payload: &payload,
            selection: &selection,
            boot: &boot,
            user: &user,
            layout_names: None,
            inventory: Some(&inventory),
        };
        let p = plan(&input, &mut Cursor::new(&bytes), &mut || Guid::NIL).unwrap();
        let mut want = vec!["VER_b", "BCT-63"];
        want.extend(["NVC-1", "PT-1", "TBC-1", "RP1-1", "EBT-1", "WB0-1", "BPF-1"]);
        want.extend(["DTB-1", "TOS-1", "EKS-1", "LNX-1"]);
        let middle: Vec<String> = (1..63).rev().map(|i| format!("BCT-{i}")).collect();
        want.extend(middle.iter().map(String::as_str));
        want.extend([
            "BCT", "PT", "TBC", "RP1", "EBT", "WB0", "BPF", "DTB", "TOS", "EKS", "LNX",
        ]);
        // BMP is not in REF's list: REF writes it after VER; we keep VER last.
        want.extend(["BMP", "NVC", "VER"]);
        assert_eq!(labels(&p.steps), want);
        let bct63 = &p.steps[1];
        assert_eq!(
            (bct63.at, bct63.span, bct63.device_offset),
            (63 * 16384, 2560, 63 * 16384)
        );
        assert!(p.slot_metadata.is_empty());

        // An interrupted update of another version blocks it.
        let mut inv = inventory.clone();
        inv.ver[1] = Some(super::super::ver::tests::ver(5, 0));
        let input = PlanInput {
            inventory: Some(&inv),
            ..input
        };
        let err = plan(&input, &mut Cursor::new(&bytes), &mut || Guid::NIL).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("previous update to 32.5.0 was incomplete"),
            "{err}"
        );

        // A payload without LNX cannot follow the fixed order.
        let short = Builder::new()
            .entry("BCT", &vec![7u8; 2560], 0, spec)
            .entry("NVC", b"n", 0, "")
            .build();
        let payload = Payload::parse_bytes(&short).unwrap();
        let selection = select(&payload.entries, NANO);
        let input = PlanInput {
            payload: &payload,
            selection: &selection,
            ..input
        };
        let err = plan(&input, &mut Cursor::new(&short), &mut || Guid::NIL).unwrap_err();
        assert_eq!(err.to_string(), "payload or partition not found for VER_b (T210 updates need every partition of the fixed order)");
    }

    #[test]
    fn other_copy_names() {
        assert_eq!(other_copy(Soc::T186, BootMedium::Emmc, "mb1"), "mb1_b");
        assert_eq!(other_copy(Soc::T210, BootMedium::Emmc, "NVC"), "NVC-1");
        assert_eq!(other_copy(Soc::T210, BootMedium::Spi, "NVC"), "NVC_R");
        assert_eq!(other_copy(Soc::T210, BootMedium::Spi, "VER"), "VER_b");
        assert_eq!(other_copy(Soc::T210, BootMedium::Emmc, "LNX"), "LNX-1");
    }
}
