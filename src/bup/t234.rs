//! Orin (T234) payloads as the firmware reads them: BUP V3 (48-byte header
//! with the ratchet accessory, 184-byte entries, names without `A_`),
//! chosen for a board by UEFI's rules, not tegra-boot-tools' (docs:
//! t234-boot-chain.md §4; edk2-nvidia `FwPackageLib.c`, `TegraFmp.c`,
//! `FwImageNames.c`). Pure.
//!
//! ```text
//!  TegraPlatformSpec ─┐  (the variable if the board has it, else the one
//!  CompatSpec ────────┤   the install will create: lock-on-create)
//!                     ▼
//!  BoardSpecs { full, compat, production } ──find()──▶ one entry per name
//!                                          ──missing()─▶ what the firmware
//!                                             requires and the payload lacks
//!  kernel payload ──kernel_writes()──▶ A_/B_kernel, A_/B_kernel-dtb
//! ```
//!
//! UEFI's TNSPEC rule (`FwPackageGetImageIndex`, `FwPackageCheckTnSpec`),
//! for each image name, entries in payload order:
//! * an entry whose `UpdateMode` does not fit the fuse (1 only on
//!   non-production parts, 2 only on production ones) is skipped;
//! * an entry with an empty spec, or one matching the compatible spec,
//!   is a candidate; the first candidate is kept;
//! * an entry matching the full spec wins at once, over earlier candidates;
//! * specs match token by token on *every* `-` (unlike REF, which keeps
//!   MACHINE's dashes in one field), with equal token counts, an empty
//!   token matching anything.
//!
//! The rule differs from [`super::tnspec::select`] (REF's) in the split, in
//! the fuse, and in the first match winning, so it is its own function;
//! [`super::tnspec::split`] is reused to find MACHINE in a spec.

#![deny(clippy::indexing_slicing)]

use super::board::Slot;
use super::payload::{Payload, PayloadEntry, PayloadFormat, NAME_LEN};
use super::tnspec::{self, MatchKind, Selected};
use crate::uefi::version::FwVersion;
use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom};

/// `FW_PACKAGE_TNSPEC_LENGTH`: UEFI copies a spec into a buffer this big, so
/// a longer one (with its NUL) never matches.
pub const TNSPEC_BUFFER: usize = 128;
/// UEFI keeps at most `FW_PACKAGE_TNSPEC_LENGTH / 2` tokens of a spec.
pub const MAX_TOKENS: usize = TNSPEC_BUFFER / 2;
/// `FMP_PLATFORM_SPEC_DEFAULT`: the compatible spec the firmware uses when
/// `TegraPlatformCompatSpec` does not exist (eight empty tokens).
pub const DEFAULT_COMPAT_SPEC: &str = "-------";
/// `FW_PACKAGE_UPDATE_MODE_ALWAYS`.
pub const UPDATE_MODE_ALWAYS: u32 = 0;
/// `FW_PACKAGE_UPDATE_MODE_NON_PRODUCTION`.
pub const UPDATE_MODE_NON_PRODUCTION: u32 = 1;
/// `FW_PACKAGE_UPDATE_MODE_PRODUCTION`.
pub const UPDATE_MODE_PRODUCTION: u32 = 2;
/// Index of FUSELEVEL in a spec: UEFI reads the fuse from it (exactly `0`
/// means not production-fused, anything else production).
const FUSE_FIELD: usize = 4;
/// Index of MACHINE in a spec split by [`tnspec::split`].
const MACHINE_FIELD: usize = 6;
/// The kernel image entry of `kernel_only_payload` (written to `A_kernel`,
/// `B_kernel` by the OS; UEFI does not write user-device partitions).
pub const KERNEL: &str = "kernel";
/// The kernel DTB entry (to `A_kernel-dtb`, `B_kernel-dtb`).
pub const KERNEL_DTB: &str = "kernel-dtb";

/// The images every T234 firmware from r35.2 to r36.4 and main requires in
/// a capsule (edk2-nvidia `FwImageNames.c`: the common and T234 lists of
/// r35.5/r35.6/r36.3+, which the older "every partition but the optional
/// ones" rule also requires).
pub const FMP_REQUIRED_BASE: [&str; 20] = [
    "adsp-fw",
    "bpmp-fw",
    "bpmp-fw-dtb",
    "cpu-bootloader",
    "mb1",
    "MB1_BCT",
    "mb2",
    "MEM_BCT",
    "mts-mce",
    "rce-fw",
    "sc7",
    "secure-os",
    "spe-fw",
    "VER",
    "dce-fw",
    "mb2rf",
    "nvdec",
    "psc_bl1",
    "psc-fw",
    "pscrf",
];

/// The images the firmware of `running` requires in a capsule: the base
/// set, plus what that release adds. With the running version unknown, the
/// base set (the payload's own names are checked as well, see [`missing`]).
///
/// * r35.2–r35.4 and r36.2 required every firmware partition on the QSPI
///   except an optional list, which adds `eks` (and `BCT` from r35.4);
/// * r36 QSPI layouts have `pva-fw`, required from r36.2 on;
/// * r35.5, r35.6 and r36.3+ have an explicit list (the base set, plus
///   `pva-fw` on r36).
pub fn fmp_required(running: Option<FwVersion>) -> Vec<&'static str> {
    let mut names = FMP_REQUIRED_BASE.to_vec();
    let Some(v) = running else {
        return names;
    };
    let r = |b, ma| FwVersion::new(b, ma, 0);
    let every_partition = v < r(35, 5) || (v >= r(36, 0) && v < r(36, 3));
    if every_partition {
        names.push("eks");
    }
    if (v >= r(35, 4) && v < r(35, 5)) || (v >= r(36, 0) && v < r(36, 3)) {
        names.push("BCT");
    }
    if v >= r(36, 0) {
        names.push("pva-fw");
    }
    names
}

/// True when a system spec and an entry spec match as UEFI matches them
/// (`FwPackageCheckTnSpec`): split on every `-`, the same number of tokens,
/// and each pair equal or one of them empty.
pub fn specs_match(system: &[u8], entry: &[u8]) -> bool {
    if system.len() >= TNSPEC_BUFFER || entry.len() >= TNSPEC_BUFFER {
        return false;
    }
    let s: Vec<&[u8]> = system.split(|&b| b == b'-').collect();
    let e: Vec<&[u8]> = entry.split(|&b| b == b'-').collect();
    s.len() == e.len()
        && s.len() <= MAX_TOKENS
        && s.iter()
            .zip(&e)
            .all(|(a, b)| a.is_empty() || b.is_empty() || a == b)
}

/// The `TegraPlatformSpec` of a board from its TNSPEC: BOARDID to MACHINE
/// and an empty BOOTDEV (`3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-`),
/// as meta-tegra's `setup-nv-boot-control` writes it. `None` without seven
/// fields.
pub fn platform_spec(tnspec: &str) -> Option<String> {
    let f = tnspec::split(tnspec.as_bytes());
    if f.len() < MACHINE_FIELD + 1 {
        return None;
    }
    let mut out = Vec::with_capacity(tnspec.len() + 1);
    for field in f.iter().take(MACHINE_FIELD + 1) {
        out.extend_from_slice(field);
        out.push(b'-');
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// meta-tegra's `egrep "^([012][0-9][0-9]|TS|EB)"` on a 3701 FAB.
fn early_3701_fab(fab: &[u8]) -> bool {
    match fab {
        [b'0'..=b'2', b'0'..=b'9', b'0'..=b'9', ..] => true,
        _ => fab.starts_with(b"TS") || fab.starts_with(b"EB"),
    }
}

/// The `TegraPlatformCompatSpec` of a platform spec, by meta-tegra's
/// `gen_compat_3701`/`gen_compat_3767` (`uefi_common.func`; jetpack-nixos'
/// `generate_compat_spec` agrees but for 3701 FABs like `1A0`, where it only
/// looks at the first character): BOARDREV and CHIPREV are emptied, and
/// * 3701 (AGX Orin): SKU 0000 groups FABs into `000` (FAB `0xx`..`2xx`,
///   `TS*`, `EB*`) and `300` (the rest); SKUs 0004, 0005, 0008 empty FAB;
/// * 3767 (Orin NX/Nano): SKUs 0000 and 0002 make FAB `000` (but keep `TS*`
///   and `EB*`); every other SKU empties FAB.
///
/// `None` for other boards (meta-tegra then writes no compatible spec).
pub fn compat_spec(platform_spec: &str) -> Option<String> {
    let f = tnspec::split(platform_spec.as_bytes());
    if f.len() < MACHINE_FIELD + 1 {
        return None;
    }
    let mut f: Vec<Vec<u8>> = f
        .iter()
        .take(MACHINE_FIELD + 1)
        .map(|x| x.to_vec())
        .collect();
    let [board, fab, sku, rev, _fuse, chiprev, _machine] = f.as_mut_slice() else {
        return None;
    };
    match board.as_slice() {
        b"3701" => {
            if sku.as_slice() == b"0000" {
                *fab = if early_3701_fab(fab) { b"000" } else { b"300" }.to_vec();
            } else if [&b"0004"[..], b"0005", b"0008"].contains(&sku.as_slice()) {
                fab.clear();
            }
        }
        b"3767" => {
            if sku.as_slice() == b"0000" || sku.as_slice() == b"0002" {
                if !(fab.starts_with(b"TS") || fab.starts_with(b"EB")) {
                    *fab = b"000".to_vec();
                }
            } else {
                fab.clear();
            }
        }
        _ => return None,
    }
    rev.clear();
    chiprev.clear();
    let mut out = Vec::new();
    for field in &f {
        out.extend_from_slice(field);
        out.push(b'-');
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Where a spec the firmware will use comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecSource {
    /// The board's variable (the firmware reads it; we never replace it).
    Variable,
    /// Made from the board's identity; the install creates the variable.
    Derived,
    /// Neither exists: the firmware's built-in default.
    FirmwareDefault,
}

/// The specs the firmware will match the payload with, and the fuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardSpecs {
    /// `TegraPlatformSpec`, `None` if neither the variable nor an identity exists.
    pub full: Option<String>,
    /// Where `full` comes from.
    pub full_source: SpecSource,
    /// `TegraPlatformCompatSpec`, or [`DEFAULT_COMPAT_SPEC`].
    pub compat: String,
    /// Where `compat` comes from.
    pub compat_source: SpecSource,
    /// Production-fused, as UEFI reads it from `full`.
    pub production: bool,
}

impl BoardSpecs {
    /// The specs at the next boot: a variable that exists stays (the
    /// install only creates missing ones, and `TegraPlatformSpec` is
    /// lock-on-create), else the one derived from `derived_full` (a
    /// platform spec, see [`platform_spec`]), else the firmware's default.
    pub fn resolve(
        var_full: Option<&str>,
        var_compat: Option<&str>,
        derived_full: Option<&str>,
    ) -> BoardSpecs {
        let (full, full_source) = match (var_full, derived_full) {
            (Some(v), _) => (Some(v.to_owned()), SpecSource::Variable),
            (None, Some(d)) => (Some(d.to_owned()), SpecSource::Derived),
            (None, None) => (None, SpecSource::FirmwareDefault),
        };
        let derived_compat = derived_full.and_then(compat_spec);
        let (compat, compat_source) = match (var_compat, derived_compat) {
            (Some(v), _) => (v.to_owned(), SpecSource::Variable),
            (None, Some(d)) => (d, SpecSource::Derived),
            (None, None) => (DEFAULT_COMPAT_SPEC.to_owned(), SpecSource::FirmwareDefault),
        };
        let production = full.as_deref().map_or(true, production_fused);
        BoardSpecs {
            full,
            full_source,
            compat,
            compat_source,
            production,
        }
    }
}

/// UEFI's `GetFuseSettings`: after the fourth `-`, exactly `0-` means not
/// production-fused; anything else (including no such field) production.
pub fn production_fused(full: &str) -> bool {
    let mut rest = full;
    for _ in 0..FUSE_FIELD {
        match rest.find('-') {
            Some(i) => rest = rest.get(i + 1..).unwrap_or(""),
            None => return true,
        }
    }
    !rest.starts_with("0-")
}

/// `FwPackageUpdateModeIsOk`.
pub fn update_mode_ok(mode: u32, production: bool) -> bool {
    match mode {
        UPDATE_MODE_ALWAYS => true,
        UPDATE_MODE_PRODUCTION => production,
        UPDATE_MODE_NON_PRODUCTION => !production,
        _ => false,
    }
}

/// The entry the firmware takes for image `name`, by UEFI's rule (module
/// documentation).
pub fn find(entries: &[PayloadEntry], name: &[u8], specs: &BoardSpecs) -> Option<Selected> {
    let mut found: Option<Selected> = None;
    for e in entries.iter().filter(|e| e.name == name) {
        if !update_mode_ok(e.op_mode, specs.production) {
            continue;
        }
        let how = if e.spec.is_empty() {
            MatchKind::Common
        } else {
            if let Some(full) = &specs.full {
                if specs_match(full.as_bytes(), &e.spec) {
                    return Some(Selected {
                        index: e.index,
                        how: MatchKind::Tnspec,
                    });
                }
            }
            if !specs_match(specs.compat.as_bytes(), &e.spec) {
                continue;
            }
            MatchKind::Compat
        };
        if found.is_none() {
            found = Some(Selected {
                index: e.index,
                how,
            });
        }
    }
    found
}

/// Every image name of a payload, in order of first appearance.
pub fn names(entries: &[PayloadEntry]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for e in entries {
        if !out.contains(&e.name.as_slice()) {
            out.push(&e.name);
        }
    }
    out
}

/// The firmware's choice for every name of the payload, and the names it
/// finds nothing for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct T234Selection {
    /// The specs used.
    pub specs: BoardSpecs,
    /// One entry per name that has one, in order of first appearance.
    pub selected: Vec<Selected>,
    /// Names with entries, none of them for this board and fuse; escaped
    /// like [`PayloadEntry::display_name`], so two names never print alike.
    pub unresolved: Vec<String>,
}

/// [`find`] for every name of the payload.
pub fn select(entries: &[PayloadEntry], specs: &BoardSpecs) -> T234Selection {
    let mut selected = Vec::new();
    let mut unresolved = Vec::new();
    for name in names(entries) {
        match find(entries, name, specs) {
            Some(s) => selected.push(s),
            None => unresolved.push(name.escape_ascii().to_string()),
        }
    }
    T234Selection {
        specs: specs.clone(),
        selected,
        unresolved,
    }
}

/// Why an image counts as missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingReason {
    /// The firmware requires it and the payload has none for this board:
    /// the capsule is refused (`IMAGE_NOT_IN_PACKAGE`, status 6151).
    Required,
    /// The payload carries it, but only for other boards or fuse modes.
    NotForBoard,
}

/// An image the board would not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Image name.
    pub name: String,
    /// Why it matters.
    pub reason: MissingReason,
}

/// The images missing for this board: each `required` one the selection has
/// no entry for, then each name the payload carries without an entry for
/// this board. Deciding by the payload as well as by the table: a name the
/// payload carries must resolve for every board it is built for, so an
/// unresolved one means the payload was not built for this board, whatever
/// release the running firmware is.
pub fn missing(entries: &[PayloadEntry], sel: &T234Selection, required: &[&str]) -> Vec<Missing> {
    let chosen: Vec<&[u8]> = sel
        .selected
        .iter()
        .filter_map(|s| entries.get(s.index as usize).map(|e| e.name.as_slice()))
        .collect();
    let mut out: Vec<Missing> = required
        .iter()
        .filter(|n| !chosen.contains(&n.as_bytes()))
        .map(|n| Missing {
            name: (*n).to_owned(),
            reason: MissingReason::Required,
        })
        .collect();
    for name in &sel.unresolved {
        if !out.iter().any(|m| &m.name == name) {
            out.push(Missing {
                name: name.clone(),
                reason: MissingReason::NotForBoard,
            });
        }
    }
    out
}

/// What a T234 payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// `bl_only_payload`: QSPI firmware, applied by UEFI from a capsule.
    Firmware,
    /// `kernel_only_payload`: `kernel` and `kernel-dtb`, written by the OS.
    Kernel,
}

/// A payload holding nothing but `kernel`/`kernel-dtb` entries is a kernel
/// payload; anything else is firmware.
pub fn kind(p: &Payload) -> PayloadKind {
    let kernel = |e: &PayloadEntry| e.name == KERNEL.as_bytes() || e.name == KERNEL_DTB.as_bytes();
    if !p.entries.is_empty() && p.entries.iter().all(kernel) {
        PayloadKind::Kernel
    } else {
        PayloadKind::Firmware
    }
}

/// A rule of UEFI's package validation (`FwPackageValidateHeader`,
/// `FwPackageValidateImageInfoArray`) that a payload breaks, beyond what
/// [`Payload::parse`] already refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageProblem {
    /// Not `NVIDIA__BLOB__V3`.
    #[error("not an NVIDIA__BLOB__V3 payload: T234 firmware reads only V3")]
    NotV3,
    /// `PackageSize` is not header + table + every entry's bytes.
    #[error("PackageSize {header} is not the {computed} bytes of header, table and entries (UEFI refuses it)")]
    PackageSize {
        /// `PackageSize` (`blob_size`).
        header: u32,
        /// Header size + 184 × count + Σ bytes.
        computed: u64,
    },
    /// `PackageSize` runs past the payload's bytes.
    #[error("PackageSize {package} is more than the payload's {file} bytes")]
    BeyondFile {
        /// `PackageSize`.
        package: u32,
        /// Bytes there are.
        file: u64,
    },
    /// An entry's data ends past `PackageSize`.
    #[error("entry {index} ({name}) ends at {end}, past PackageSize {package}")]
    EntryBeyondPackage {
        /// Entry index.
        index: u32,
        /// Its name.
        name: String,
        /// `Offset + Bytes`.
        end: u64,
        /// `PackageSize`.
        package: u32,
    },
    /// `UpdateMode` other than 0, 1, 2.
    #[error("entry {index} ({name}) has UpdateMode {mode} (0, 1 or 2)")]
    UpdateMode {
        /// Entry index.
        index: u32,
        /// Its name.
        name: String,
        /// The mode.
        mode: u32,
    },
    /// The name fills its 40 bytes without a NUL.
    #[error("entry {index} has a name of 40 bytes without a NUL terminator (UEFI refuses it)")]
    NameUnterminated {
        /// Entry index.
        index: u32,
    },
    /// The spec fills its 128 bytes without a NUL.
    #[error("entry {index} ({name}) has a spec of 128 bytes without a NUL terminator")]
    SpecUnterminated {
        /// Entry index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// A blank inside a name or spec: UEFI compares up to the NUL, this
    /// reader up to the blank, so the two would choose differently.
    #[error("entry {index} ({name}) has a blank inside its {field}")]
    Blank {
        /// Entry index.
        index: u32,
        /// Its name (up to the blank).
        name: String,
        /// `name` or `spec`.
        field: &'static str,
    },
    /// One entry only: a development package production firmware refuses
    /// (`PcdFmpSingleImageUpdate`).
    #[error("a firmware payload of one entry is a single-image development package; production firmware refuses it")]
    SingleImage,
}

fn cstr_len(field: &[u8]) -> Option<usize> {
    field.iter().position(|&b| b == 0)
}

/// Checks a parsed payload against UEFI's package rules, reading its
/// entry table again from `r` (the payload's own bytes, e.g. a
/// [`crate::uefi::capsule::Window`]) to see the raw name and spec fields.
pub fn validate_package<R: Read + Seek>(r: &mut R, p: &Payload) -> io::Result<Vec<PackageProblem>> {
    let mut out = Vec::new();
    if p.header.format != PayloadFormat::V3 {
        out.push(PackageProblem::NotV3);
        return Ok(out);
    }
    let entry_len = PayloadFormat::V3.entry_len();
    let spec_len = PayloadFormat::V3.spec_len();
    let package = p.header.blob_size;
    let computed = u64::from(p.header.header_size)
        + p.entries.len() as u64 * entry_len as u64
        + p.entries.iter().map(|e| u64::from(e.length)).sum::<u64>();
    if u64::from(package) != computed {
        out.push(PackageProblem::PackageSize {
            header: package,
            computed,
        });
    }
    if u64::from(package) > p.file_size {
        out.push(PackageProblem::BeyondFile {
            package,
            file: p.file_size,
        });
    }
    // Bounded: the table was read once already (at most MAX_ENTRIES × 184).
    r.seek(SeekFrom::Start(u64::from(p.header.header_size)))?;
    let mut table = vec![0u8; p.entries.len() * entry_len];
    r.read_exact(&mut table)?;
    for (e, raw) in p.entries.iter().zip(table.chunks_exact(entry_len)) {
        let name = e.display_name();
        if e.end() > u64::from(package) {
            out.push(PackageProblem::EntryBeyondPackage {
                index: e.index,
                name: name.clone(),
                end: e.end(),
                package,
            });
        }
        if e.op_mode > UPDATE_MODE_PRODUCTION {
            out.push(PackageProblem::UpdateMode {
                index: e.index,
                name: name.clone(),
                mode: e.op_mode,
            });
        }
        let raw_name = raw.get(..NAME_LEN).unwrap_or(&[]);
        let raw_spec = raw.get(entry_len - spec_len..).unwrap_or(&[]);
        match cstr_len(raw_name) {
            None => out.push(PackageProblem::NameUnterminated { index: e.index }),
            Some(n) if n != e.name.len() => out.push(PackageProblem::Blank {
                index: e.index,
                name: name.clone(),
                field: "name",
            }),
            Some(_) => {}
        }
        match cstr_len(raw_spec) {
            None => out.push(PackageProblem::SpecUnterminated {
                index: e.index,
                name: name.clone(),
            }),
            Some(n) if n != e.spec.len() => out.push(PackageProblem::Blank {
                index: e.index,
                name,
                field: "spec",
            }),
            Some(_) => {}
        }
    }
    if p.entries.len() == 1 && kind(p) == PayloadKind::Firmware {
        out.push(PackageProblem::SingleImage);
    }
    Ok(out)
}

/// One kernel partition to write from a kernel payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelWrite {
    /// The user-device partition (`A_kernel`, `B_kernel-dtb`, ...).
    pub partition: String,
    /// The slot it belongs to.
    pub slot: Slot,
    /// The entry written there.
    pub entry: u32,
    /// `kernel` or `kernel-dtb`.
    pub image: &'static str,
    /// Offset of the entry's data in the payload.
    pub offset: u32,
    /// Bytes written.
    pub length: u32,
    /// How the entry matched.
    pub how: MatchKind,
}

/// Why a kernel partition cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelProblem {
    /// No entry for this board.
    #[error("the kernel payload has no {image} entry for this board (specs {full} / {compat})")]
    NoEntry {
        /// `kernel` or `kernel-dtb`.
        image: &'static str,
        /// The full spec used.
        full: String,
        /// The compatible spec used.
        compat: String,
    },
    /// The layout has no such partition.
    #[error("the layout has no {0} partition")]
    NoPartition(String),
    /// The entry does not fit.
    #[error("{partition}: the {image} entry is {length} bytes, the partition {size}")]
    TooBig {
        /// Partition.
        partition: String,
        /// Image.
        image: &'static str,
        /// Entry bytes.
        length: u32,
        /// Partition bytes.
        size: u64,
    },
}

/// The partition a kernel image of a slot goes to (`A_kernel`,
/// `B_kernel-dtb`): the names NVIDIA's T234 layouts give them.
pub fn kernel_partition(slot: Slot, image: &str) -> String {
    format!("{}_{image}", slot.letter())
}

/// The kernel partitions of `slots` and the entries that go there, chosen
/// by the firmware's rule (NVIDIA writes the same selection from the OS);
/// with `sizes` (partition name, bytes), every partition must exist and
/// hold its entry. Returns the writes and, separately, every problem.
pub fn kernel_writes(
    entries: &[PayloadEntry],
    specs: &BoardSpecs,
    slots: &[Slot],
    sizes: Option<&[(String, u64)]>,
) -> (Vec<KernelWrite>, Vec<KernelProblem>) {
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    let mut chosen = Vec::new();
    for image in [KERNEL, KERNEL_DTB] {
        match find(entries, image.as_bytes(), specs)
            .and_then(|sel| entries.get(sel.index as usize).map(|e| (e, sel.how)))
        {
            Some(found) => chosen.push((image, found)),
            None => problems.push(KernelProblem::NoEntry {
                image,
                full: specs.full.clone().unwrap_or_else(|| "(none)".into()),
                compat: specs.compat.clone(),
            }),
        }
    }
    // Slot by slot, image then DTB: the order they are written in.
    for slot in [Slot::A, Slot::B].into_iter().filter(|s| slots.contains(s)) {
        for &(image, (e, how)) in &chosen {
            let partition = kernel_partition(slot, image);
            if let Some(sizes) = sizes {
                match sizes.iter().find(|(n, _)| *n == partition) {
                    None => {
                        problems.push(KernelProblem::NoPartition(partition));
                        continue;
                    }
                    Some((_, size)) if u64::from(e.length) > *size => {
                        problems.push(KernelProblem::TooBig {
                            partition,
                            image,
                            length: e.length,
                            size: *size,
                        });
                        continue;
                    }
                    Some(_) => {}
                }
            }
            writes.push(KernelWrite {
                partition,
                slot,
                entry: e.index,
                image,
                offset: e.offset,
                length: e.length,
                how,
            });
        }
    }
    (writes, problems)
}

/// Payloads shared by the unit tests of the T234 modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::payload::{Builder, PayloadFormat};
    use super::FMP_REQUIRED_BASE;

    /// The AGX Orin devkit's platform spec.
    pub const AGX_SPEC: &str = "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-";
    /// Its compatible spec by meta-tegra's rules.
    pub const AGX_COMPAT: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";
    /// The spec meta-tegra's BUP entries carry for it (`TEGRA_BUPGEN_SPECS`).
    pub const AGX_ENTRY: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";

    /// A V3 builder with the R35 generator's version word.
    pub fn v3() -> Builder {
        let mut b = Builder::new();
        b.format = PayloadFormat::V3;
        b.version = 0x0103_0622;
        b
    }

    /// A `bl_only_payload` like R36's for the AGX Orin devkit: every
    /// required image, `mb1`/`MB1_BCT`/`MEM_BCT`/`VER`/`bpmp-fw-dtb`
    /// board-specific, `mb1` in a non-production and a production copy.
    pub fn agx_firmware() -> Builder {
        let mut b = v3();
        let specific = ["MB1_BCT", "MEM_BCT", "VER", "bpmp-fw-dtb"];
        for name in FMP_REQUIRED_BASE.iter().chain(&["pva-fw", "BCT", "eks"]) {
            if *name == "mb1" {
                b = b
                    .entry("mb1", b"mb1 dev", 1, "")
                    .entry("mb1", b"mb1 prod", 2, "");
            } else if specific.contains(name) {
                b = b.entry(name, name.as_bytes(), 0, AGX_ENTRY);
            } else {
                b = b.entry(name, name.as_bytes(), 0, "");
            }
        }
        b
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn parse(b: &super::super::payload::Builder) -> Payload {
        Payload::parse_bytes(&b.build()).unwrap()
    }

    fn specs(full: &str) -> BoardSpecs {
        BoardSpecs::resolve(None, None, Some(full))
    }

    #[test]
    fn uefi_token_rule() {
        for (sys, entry, want) in [
            (AGX_SPEC, AGX_SPEC, true),
            (AGX_COMPAT, AGX_ENTRY, true),
            (AGX_SPEC, AGX_ENTRY, false),
            // Empty tokens on either side are wildcards.
            ("3701--0000--1--jetson-agx-orin-devkit-", AGX_SPEC, true),
            // Equal token counts: MACHINE's dashes count (REF would match).
            ("3701-500-0000-J.0-1-1-jetson-agx-orin-", AGX_SPEC, false),
            ("a-b", "a-b-", false),
            ("", "", true),
            (DEFAULT_COMPAT_SPEC, "a-b-c-d-e-f-g-h", true),
            (DEFAULT_COMPAT_SPEC, AGX_ENTRY, false),
        ] {
            assert_eq!(
                specs_match(sys.as_bytes(), entry.as_bytes()),
                want,
                "{sys} / {entry}"
            );
        }
        let long = "x-".repeat(64);
        assert!(!specs_match(long.as_bytes(), long.as_bytes()));
    }

    #[test]
    fn platform_and_compat_specs() {
        assert_eq!(
            platform_spec("3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-mmcblk0p1").as_deref(),
            Some(AGX_SPEC)
        );
        assert_eq!(platform_spec(AGX_SPEC).as_deref(), Some(AGX_SPEC));
        assert_eq!(platform_spec("3701-500"), None);
        for (full, compat) in [
            (AGX_SPEC, Some(AGX_COMPAT)),
            (
                "3701-200-0000-J.0-1-1-jetson-agx-orin-devkit-",
                Some("3701-000-0000--1--jetson-agx-orin-devkit-"),
            ),
            (
                "3701-TS4-0000-A.0-1-0-jetson-agx-orin-devkit-",
                Some("3701-000-0000--1--jetson-agx-orin-devkit-"),
            ),
            ("3701-1A0-0000-A.0-1-0-m-", Some("3701-300-0000--1--m-")),
            (
                "3701-500-0005-G.0-1-0-jetson-agx-orin-devkit-",
                Some("3701--0005--1--jetson-agx-orin-devkit-"),
            ),
            (
                "3701-500-0001-G.0-1-0-jetson-agx-orin-devkit-",
                Some("3701-500-0001--1--jetson-agx-orin-devkit-"),
            ),
            (
                "3767-300-0000-K.2-1-0-jetson-orin-nano-devkit-",
                Some("3767-000-0000--1--jetson-orin-nano-devkit-"),
            ),
            (
                "3767-EB1-0002-K.2-1-0-jetson-orin-nano-devkit-",
                Some("3767-EB1-0002--1--jetson-orin-nano-devkit-"),
            ),
            (
                "3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-",
                Some("3767--0005--1--jetson-orin-nano-devkit-"),
            ),
            ("2888-400-0001-C.1-1-2-jetson-agx-xavier-devkit-", None),
            ("3767-300", None),
        ] {
            assert_eq!(compat_spec(full).as_deref(), compat, "{full}");
        }
    }

    #[test]
    fn the_fuse_is_read_from_the_fifth_field() {
        assert!(production_fused(AGX_SPEC));
        assert!(!production_fused(
            "3701-500-0000-J.0-0-1-jetson-agx-orin-devkit-"
        ));
        assert!(production_fused("3701-500-0000-J.0-00-1-m-"));
        assert!(production_fused("3701-500-0000-J.0--1-m-"));
        assert!(production_fused("3701-500-0000-J.0"));
        // "0" must be followed by a dash, as UEFI tests it.
        assert!(production_fused("3701-500-0000-J.0-0"));
        let s = BoardSpecs::resolve(None, None, None);
        assert!(s.production && s.full.is_none());
        assert_eq!(s.compat, DEFAULT_COMPAT_SPEC);
        assert_eq!(s.compat_source, SpecSource::FirmwareDefault);
    }

    #[test]
    fn variables_win_over_the_derived_specs() {
        let s = BoardSpecs::resolve(Some("v-full-"), None, Some(AGX_SPEC));
        assert_eq!(s.full.as_deref(), Some("v-full-"));
        assert_eq!(s.full_source, SpecSource::Variable);
        assert_eq!(s.compat, AGX_COMPAT);
        assert_eq!(s.compat_source, SpecSource::Derived);
        let s = BoardSpecs::resolve(None, Some("v-compat-"), Some(AGX_SPEC));
        assert_eq!(s.compat, "v-compat-");
        assert_eq!(s.full_source, SpecSource::Derived);
    }

    #[test]
    fn first_full_match_wins_else_the_first_candidate() {
        let p = parse(
            &v3()
                .entry("VER", b"common", 0, "")
                .entry("VER", b"compat", 0, AGX_ENTRY)
                .entry("VER", b"full", 0, AGX_SPEC)
                .entry("VER", b"full again", 0, AGX_SPEC)
                .entry("BCT", b"compat", 0, AGX_ENTRY)
                .entry("BCT", b"common", 0, "")
                .entry("mb1", b"dev", 1, "")
                .entry("mb1", b"prod", 2, "")
                .entry("x", b"bad mode", 3, ""),
        );
        let s = specs(AGX_SPEC);
        let pick = |n: &str| find(&p.entries, n.as_bytes(), &s);
        assert_eq!(
            pick("VER"),
            Some(Selected {
                index: 2,
                how: MatchKind::Tnspec
            })
        );
        assert_eq!(
            pick("BCT"),
            Some(Selected {
                index: 4,
                how: MatchKind::Compat
            })
        );
        assert_eq!(pick("mb1").unwrap().index, 7);
        assert_eq!(pick("x"), None);
        let dev = specs("3701-500-0000-J.0-0-1-jetson-agx-orin-devkit-");
        assert_eq!(find(&p.entries, b"mb1", &dev).unwrap().index, 6);
        // Without the full spec the earlier common entry is the first candidate.
        let compat_only = BoardSpecs::resolve(None, Some(AGX_COMPAT), None);
        assert_eq!(find(&p.entries, b"VER", &compat_only).unwrap().index, 0);
    }

    #[test]
    fn the_orin_nano_of_meta_tegra_1531_finds_nothing() {
        // An entry for SKU 0003 against a SKU 0005 board: status 6164 there.
        let p = parse(&v3().entry(
            "VER",
            b"v",
            0,
            "3767-000-0003--1-1-jetson-orin-nano-devkit-",
        ));
        let s = specs("3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-");
        let sel = select(&p.entries, &s);
        assert!(sel.selected.is_empty());
        assert_eq!(sel.unresolved, ["VER"]);
        let m = missing(&p.entries, &sel, &fmp_required(None));
        assert_eq!(m.len(), 20);
        assert!(m
            .iter()
            .any(|m| m.name == "VER" && m.reason == MissingReason::Required));
    }

    #[test]
    fn names_that_are_not_utf8_print_apart() {
        // Found by the capsule fuzz target: 0xff and the UTF-8 of U+FFFD
        // once printed alike, so a selected name seemed to be missing too.
        let b = v3()
            .entry("\u{fffd}", b"v", 0, "")
            .entry("Z", b"v", 0, "3767-000-0003--1-1-x-");
        let mut bytes = b.build();
        let second = super::super::payload::HEADER_LEN as usize
            + b.accessory.len()
            + PayloadFormat::V3.entry_len();
        assert_eq!(bytes[second], b'Z');
        bytes[second] = 0xff;
        let p = Payload::parse_bytes(&bytes).unwrap();
        let sel = select(&p.entries, &specs(AGX_SPEC));
        assert_eq!(sel.selected.len(), 1);
        assert_eq!(sel.unresolved, ["\\xff"]);
        let m = missing(&p.entries, &sel, &[]);
        assert_eq!(m.len(), 1);
        assert_ne!(m[0].name.as_bytes(), "\u{fffd}".as_bytes());
    }

    #[test]
    fn required_images_per_running_release() {
        let has = |v: Option<FwVersion>, n: &str| fmp_required(v).contains(&n);
        let v = |b, ma, mi| Some(FwVersion::new(b, ma, mi));
        assert_eq!(fmp_required(None).len(), 20);
        assert!(has(v(35, 3, 1), "eks") && !has(v(35, 3, 1), "BCT") && !has(v(35, 3, 1), "pva-fw"));
        assert!(has(v(35, 4, 1), "BCT"));
        assert!(!has(v(35, 5, 0), "eks") && !has(v(35, 6, 4), "BCT"));
        assert!(has(v(36, 2, 0), "eks") && has(v(36, 2, 0), "pva-fw") && has(v(36, 2, 0), "BCT"));
        assert!(!has(v(36, 4, 3), "eks") && has(v(36, 4, 3), "pva-fw"));
    }

    #[test]
    fn a_full_firmware_payload_misses_nothing() {
        let p = parse(&agx_firmware());
        assert_eq!(kind(&p), PayloadKind::Firmware);
        let s = specs(AGX_SPEC);
        let sel = select(&p.entries, &s);
        assert!(sel.unresolved.is_empty(), "{:?}", sel.unresolved);
        for v in [
            None,
            Some(FwVersion::new(35, 3, 1)),
            Some(FwVersion::new(36, 4, 3)),
        ] {
            assert!(
                missing(&p.entries, &sel, &fmp_required(v)).is_empty(),
                "{v:?}"
            );
        }
        // Another board: the four board-specific images are not for it.
        let other = select(
            &p.entries,
            &specs("3701-500-0004-J.0-1-1-jetson-agx-orin-devkit-"),
        );
        let m = missing(&p.entries, &other, &fmp_required(None));
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bpmp-fw-dtb", "MB1_BCT", "MEM_BCT", "VER"]);
        // A payload without pva-fw on R36 firmware.
        let mut b = agx_firmware();
        b.entries.retain(|e| e.0 != "pva-fw");
        let p = parse(&b);
        let sel = select(&p.entries, &s);
        let m = missing(
            &p.entries,
            &sel,
            &fmp_required(Some(FwVersion::new(36, 3, 0))),
        );
        assert_eq!(
            m,
            [Missing {
                name: "pva-fw".into(),
                reason: MissingReason::Required
            }]
        );
        assert!(missing(
            &p.entries,
            &sel,
            &fmp_required(Some(FwVersion::new(35, 6, 0)))
        )
        .is_empty());
    }

    #[test]
    fn uefi_package_rules() {
        let good = agx_firmware().build();
        let p = Payload::parse_bytes(&good).unwrap();
        let check = |b: &[u8]| {
            let p = Payload::parse_bytes(b).unwrap();
            validate_package(&mut io::Cursor::new(b), &p)
                .unwrap()
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
        };
        assert!(check(&good).is_empty(), "{:?}", check(&good));
        let mut b = good.clone();
        b[20..24].copy_from_slice(&(good.len() as u32 - 1).to_le_bytes());
        let got = check(&b);
        assert!(got[0].starts_with("PackageSize"), "{got:?}");
        assert!(got[1].contains("ends at"), "{got:?}");
        let mut b = good.clone();
        b[20..24].copy_from_slice(&(good.len() as u32 + 1).to_le_bytes());
        assert!(check(&b)
            .iter()
            .any(|x| x.contains("more than the payload's")));
        // Entry 0: name at 48, UpdateMode at 48+52, spec at 48+56.
        let mut b = good.clone();
        b[100..104].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            check(&b),
            ["entry 0 (adsp-fw) has UpdateMode 7 (0, 1 or 2)"]
        );
        let mut b = good.clone();
        b[48..88].fill(b'n');
        assert_eq!(
            check(&b),
            ["entry 0 has a name of 40 bytes without a NUL terminator (UEFI refuses it)"]
        );
        let mut b = good.clone();
        b[48 + 3] = b' ';
        b[48 + 4] = b'x';
        assert_eq!(check(&b), ["entry 0 (ads) has a blank inside its name"]);
        let mut b = good.clone();
        b[104..232].fill(b'-');
        assert_eq!(
            check(&b),
            ["entry 0 (adsp-fw) has a spec of 128 bytes without a NUL terminator"]
        );
        let single = v3().entry("mb1", b"x", 0, "").build();
        assert_eq!(check(&single), ["a firmware payload of one entry is a single-image development package; production firmware refuses it"]);
        let mut v2 = agx_firmware();
        v2.format = PayloadFormat::V2;
        v2.version = 0x0102_0621;
        let b = v2.build();
        assert_eq!(
            check(&b),
            ["not an NVIDIA__BLOB__V3 payload: T234 firmware reads only V3"]
        );
        assert_eq!(p.header.header_size, 48);
    }

    #[test]
    fn kernel_partitions_of_the_slots_written() {
        let p = parse(
            &v3()
                .entry("kernel", &[1; 100], 0, "")
                .entry(
                    "kernel-dtb",
                    &[2; 10],
                    0,
                    "3701-300-0004--1--jetson-agx-orin-devkit-",
                )
                .entry("kernel-dtb", &[3; 20], 0, AGX_ENTRY),
        );
        assert_eq!(kind(&p), PayloadKind::Kernel);
        let s = specs(AGX_SPEC);
        let (w, problems) = kernel_writes(&p.entries, &s, &[Slot::B, Slot::A], None);
        assert!(problems.is_empty());
        let got: Vec<(&str, u32, u32)> = w
            .iter()
            .map(|w| (w.partition.as_str(), w.entry, w.length))
            .collect();
        assert_eq!(
            got,
            [
                ("A_kernel", 0, 100),
                ("A_kernel-dtb", 2, 20),
                ("B_kernel", 0, 100),
                ("B_kernel-dtb", 2, 20)
            ]
        );
        let sizes = vec![
            ("A_kernel".to_string(), 100u64),
            ("A_kernel-dtb".to_string(), 19),
            ("B_kernel".to_string(), 64),
        ];
        let (w, problems) = kernel_writes(&p.entries, &s, &[Slot::A, Slot::B], Some(&sizes));
        assert_eq!(w.len(), 1);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "A_kernel-dtb: the kernel-dtb entry is 20 bytes, the partition 19",
                "B_kernel: the kernel entry is 100 bytes, the partition 64",
                "the layout has no B_kernel-dtb partition",
            ]
        );
        let other = specs("3701-500-0008-J.0-1-1-jetson-agx-orin-devkit-");
        let (_, problems) = kernel_writes(&p.entries, &other, &[Slot::A], None);
        assert_eq!(
            problems[0].to_string(),
            "the kernel payload has no kernel-dtb entry for this board (specs \
             3701-500-0008-J.0-1-1-jetson-agx-orin-devkit- / 3701--0008--1--jetson-agx-orin-devkit-)"
        );
    }

    #[test]
    fn matching_never_panics() {
        use proptest::prelude::*;
        proptest!(|(a in proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'a'), any::<u8>()], 0..140),
                    b in proptest::collection::vec(prop_oneof![Just(b'-'), Just(b'a')], 0..140))| {
            let m = specs_match(&a, &b);
            prop_assert_eq!(m, specs_match(&b, &a));
            if let Ok(t) = std::str::from_utf8(&a) {
                if let Some(c) = compat_spec(t) {
                    prop_assert!(c.ends_with('-'));
                }
                let _ = production_fused(t);
            }
        });
    }
}
