//! The T234 check of a payload or a capsule, as `bup check` and an
//! install's preflight make it: open the file, find the BUP (inside a
//! capsule or alone), and put [`super::t234`] and [`crate::uefi::preflight`]
//! together. Reads only the given file; the board's specs and the firmware
//! state come in as values (from [`crate::sys::efivarfs`],
//! [`crate::sys::esrt`] or the command line).
//!
//! ```text
//!  open()   file ──capsule?──▶ Capsule + Window ──▶ Payload (V3)
//!  check()  + BoardSpecs, FirmwareState, QSPI layout comparison, slots,
//!           partition sizes ──▶ Outcome { problems, notes, ... }
//! ```
//!
//! A firmware payload: every image the running firmware requires, for this
//! board; UEFI's package rules; in a capsule, the preflight refusals. A
//! kernel payload: `kernel`/`kernel-dtb` for the slots, sizes against the
//! layout's partitions.

use super::board::Slot;
use super::payload::{Payload, PayloadFormat};
use super::t234::{self, BoardSpecs, KernelProblem, KernelWrite, Missing, PayloadKind};
use super::update::{self, Identity, IdentityRequest};
use crate::layout::Soc;
use crate::sys::board::SysRoot;
use crate::sys::{efivarfs, esrt};
use crate::uefi::capsule::{self, Capsule, FileKind, Window};
use crate::uefi::esrt::FirmwareState;
use crate::uefi::preflight::{self, QspiLayout, Refusal};
use anyhow::Context;
use serde::Serialize;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

/// A payload file or capsule, opened and parsed.
#[derive(Debug)]
pub struct Opened {
    /// The file (positioned anywhere).
    pub file: File,
    /// The capsule around the payload, if it is one.
    pub capsule: Option<Capsule>,
    /// The payload.
    pub payload: Payload,
    /// Where the payload is in the file (all of it for a bare payload).
    pub range: Range<u64>,
}

impl Opened {
    /// The payload's bytes as a file of their own (entry offsets count from
    /// its start).
    pub fn window(&mut self) -> Window<&mut File> {
        Window::new(&mut self.file, self.range.clone())
    }

    /// The absolute offset in the file of a payload offset.
    pub fn file_offset(&self, payload_offset: u32) -> u64 {
        self.range.start + u64::from(payload_offset)
    }
}

/// Opens a payload or a capsule and parses the payload (and the capsule).
pub fn open(path: &Path) -> anyhow::Result<Opened> {
    let what = || path.display().to_string();
    let mut file = File::open(path).with_context(what)?;
    let mut head = Vec::new();
    (&mut file)
        .take(16)
        .read_to_end(&mut head)
        .with_context(what)?;
    let (capsule, range) = match capsule::detect(&head) {
        FileKind::Capsule => {
            let c = Capsule::parse(&mut file).with_context(what)?;
            let r = c.payload.clone();
            (Some(c), r)
        }
        _ => {
            let len = file.metadata().with_context(what)?.len();
            (None, 0..len)
        }
    };
    let payload = {
        let mut w = Window::new(&mut file, range.clone());
        Payload::parse(&mut w).with_context(|| match capsule {
            Some(_) => format!("{}: the payload inside the capsule", path.display()),
            None => path.display().to_string(),
        })?
    };
    Ok(Opened {
        file,
        capsule,
        payload,
        range,
    })
}

/// The board as its firmware will see it at the next boot.
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    /// The specs the firmware will match payloads with.
    pub specs: BoardSpecs,
    /// `TegraPlatformSpec` made from the board's identity (what an install
    /// creates when the variable is missing).
    pub derived_spec: Option<String>,
    /// `TegraPlatformCompatSpec` made from it.
    pub derived_compat: Option<String>,
    /// Where the derived spec comes from (`--tnspec`, `EEPROM ...`).
    pub derived_from: Option<String>,
    /// The identity, when it was read.
    pub identity: Option<Identity>,
    /// The running firmware, when there is efivarfs or an ESRT.
    pub firmware: Option<FirmwareState>,
}

/// Reads the board under `root` (`/`, or a fake tree): the firmware state
/// from `sys/firmware/efi/{esrt,efivars}` and the identity as
/// [`update::identify`] builds it. An explicit `--tnspec` is the board's
/// spec (variables ignored); otherwise the variables win over the identity
/// (an install only creates missing ones), and the identity is needed only
/// when there is no `TegraPlatformSpec`.
pub fn read_board(root: &SysRoot, req: &IdentityRequest) -> anyhow::Result<Board> {
    let mut vars = efivarfs::Efivarfs::new(root.path(efivarfs::EFIVARS));
    let esrt_dir = root.path(esrt::ESRT);
    let firmware = if vars.present() || esrt_dir.is_dir() {
        Some(esrt::firmware_state(&esrt_dir, &mut vars)?)
    } else {
        None
    };
    let req = IdentityRequest {
        layout_soc: req.layout_soc.or(Some(Soc::T234)),
        ..req.clone()
    };
    let has_var = firmware.as_ref().is_some_and(|f| f.platform_spec.is_some());
    let identity = match update::identify(root, &req) {
        Ok(id) => Some(id),
        Err(e) if has_var => {
            log::info!("board identity not read ({e:#}); TegraPlatformSpec is set");
            None
        }
        Err(e) => return Err(e),
    };
    let derived_spec = match &identity {
        Some(id) => Some(t234::platform_spec(&id.tnspec).ok_or_else(|| {
            crate::exit::UsageError(format!(
                "{}: a T234 spec has at least BOARDID-FAB-SKU-REV-FUSE-CHIPREV-MACHINE",
                id.tnspec
            ))
        })?),
        None => None,
    };
    let derived_compat = derived_spec.as_deref().and_then(t234::compat_spec);
    let specs = match (&req.tnspec, &firmware) {
        (Some(_), _) | (None, None) => BoardSpecs::resolve(None, None, derived_spec.as_deref()),
        (None, Some(f)) => BoardSpecs::resolve(
            f.platform_spec.as_deref(),
            f.compat_spec.as_deref(),
            derived_spec.as_deref(),
        ),
    };
    Ok(Board {
        specs,
        derived_from: identity.as_ref().map(|i| i.tnspec_source.clone()),
        derived_spec,
        derived_compat,
        identity,
        firmware,
    })
}

/// What the check looks at besides the file.
#[derive(Debug, Clone)]
pub struct CheckInput<'a> {
    /// The specs the firmware will match with.
    pub specs: &'a BoardSpecs,
    /// The running firmware, when the check runs on the board.
    pub firmware: Option<&'a FirmwareState>,
    /// Whether the QSPI layout changes.
    pub qspi_layout: QspiLayout,
    /// Slots whose kernel partitions a kernel payload is for.
    pub kernel_slots: &'a [Slot],
    /// User-device partition sizes (name, bytes), when a layout is known.
    pub partition_sizes: Option<&'a [(String, u64)]>,
}

/// What the check found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Firmware or kernel payload.
    pub kind: PayloadKind,
    /// The firmware's choice per name.
    pub selection: t234::T234Selection,
    /// Required images this board would not get (firmware payloads).
    pub missing: Vec<Missing>,
    /// The capsule refusals (firmware capsules).
    pub refusals: Vec<Refusal>,
    /// Kernel partitions to write (kernel payloads).
    pub kernel_writes: Vec<KernelWrite>,
    /// Every reason the payload cannot be installed, one line each.
    pub problems: Vec<String>,
    /// What was not checked, and facts worth saying.
    pub notes: Vec<String>,
}

impl Outcome {
    /// True when nothing stands in the way.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks an opened payload or capsule for this board.
pub fn check(o: &mut Opened, input: &CheckInput) -> anyhow::Result<Outcome> {
    let package = {
        let mut w = Window::new(&mut o.file, o.range.clone());
        t234::validate_package(&mut w, &o.payload).context("reading the payload")?
    };
    let p = &o.payload;
    let kind = t234::kind(p);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    problems.extend(package.iter().map(|x| x.to_string()));

    let selection = t234::select(&p.entries, input.specs);
    let board = format!(
        "{} / {}{}",
        input
            .specs
            .full
            .as_deref()
            .unwrap_or("(no TegraPlatformSpec)"),
        input.specs.compat,
        if input.specs.compat_source == t234::SpecSource::FirmwareDefault {
            " (no TegraPlatformCompatSpec: the firmware's default)"
        } else {
            ""
        }
    );
    let empty = FirmwareState::default();
    let firmware = input.firmware.unwrap_or(&empty);
    let image_type = o.capsule.as_ref().map(Capsule::image_type);
    let running = firmware.running_version(image_type);
    let mut missing = Vec::new();
    let mut refusals = Vec::new();
    let mut kernel_writes = Vec::new();
    match kind {
        PayloadKind::Firmware => {
            if p.header.format == PayloadFormat::V3 {
                missing = t234::missing(&p.entries, &selection, &t234::fmp_required(running));
            }
            if running.is_none() {
                notes.push(
                    "running firmware unknown: the images every release requires were checked, \
                     not the ones the running release adds"
                        .into(),
                );
            }
            match &o.capsule {
                Some(c) => {
                    let v = preflight::check(&preflight::PreflightInput {
                        capsule: c,
                        missing: &missing,
                        board: &board,
                        firmware,
                        qspi_layout: input.qspi_layout,
                    });
                    problems.extend(v.refusals.iter().map(|r| r.to_string()));
                    refusals = v.refusals;
                    notes.extend(v.notes);
                }
                None => {
                    if !missing.is_empty() {
                        let names: Vec<&str> = missing.iter().map(|m| m.name.as_str()).collect();
                        problems.push(
                            Refusal::MissingImages {
                                names: names.join(", "),
                                board: board.clone(),
                            }
                            .to_string(),
                        );
                    }
                    notes.push(
                        "a bare payload: the firmware takes it only inside a signed capsule \
                         (image type, signature and versions not checked)"
                            .into(),
                    );
                }
            }
        }
        PayloadKind::Kernel => {
            let (w, kp): (Vec<KernelWrite>, Vec<KernelProblem>) = t234::kernel_writes(
                &p.entries,
                input.specs,
                input.kernel_slots,
                input.partition_sizes,
            );
            problems.extend(kp.iter().map(|x| x.to_string()));
            kernel_writes = w;
            if input.partition_sizes.is_none() {
                notes.push("no --layout: kernel partition sizes not checked".into());
            }
        }
    }
    problems.dedup();
    Ok(Outcome {
        kind,
        selection,
        missing,
        refusals,
        kernel_writes,
        problems,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bup::t234::test_support::*;
    use crate::uefi::capsule::Builder;
    use crate::uefi::vars::TEGRA_FMP_IMAGE_TYPE;

    fn opened(dir: &Path, name: &str, bytes: &[u8]) -> Opened {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        open(&p).unwrap()
    }

    fn input(specs: &BoardSpecs) -> CheckInput<'_> {
        CheckInput {
            specs,
            firmware: None,
            qspi_layout: QspiLayout::Unknown,
            kernel_slots: &[Slot::A, Slot::B],
            partition_sizes: None,
        }
    }

    #[test]
    fn a_capsule_for_the_board() {
        let dir = tempfile::tempdir().unwrap();
        let bup = agx_firmware().build();
        let cap = Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&bup);
        let mut o = opened(dir.path(), "tegra-bl.cap", &cap);
        assert_eq!(o.range.end - o.range.start, bup.len() as u64);
        assert_eq!(o.payload.entries.len(), bup_entries());
        let specs = BoardSpecs::resolve(None, None, Some(AGX_SPEC));
        let out = check(&mut o, &input(&specs)).unwrap();
        assert!(out.ok(), "{:?}", out.problems);
        assert_eq!(out.kind, PayloadKind::Firmware);
        assert!(out.notes.iter().any(|n| n.contains("no ESRT")));
        // An entry's data through the absolute offset.
        let e = &o.payload.entries[0];
        let at = o.file_offset(e.offset) as usize;
        assert_eq!(&cap[at..at + e.length as usize], b"adsp-fw");
    }

    fn bup_entries() -> usize {
        Payload::parse_bytes(&agx_firmware().build())
            .unwrap()
            .entries
            .len()
    }

    #[test]
    fn another_board_and_a_bare_payload() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opened(dir.path(), "bl_only_payload", &agx_firmware().build());
        assert!(o.capsule.is_none());
        let specs = BoardSpecs::resolve(
            None,
            None,
            Some("3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-"),
        );
        let out = check(&mut o, &input(&specs)).unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(out.problems[0].starts_with(
            "the payload has no bpmp-fw-dtb, MB1_BCT, MEM_BCT, VER for this board (3767-300-0005"
        ));
        assert!(out.notes.iter().any(|n| n.starts_with("a bare payload")));
    }

    #[test]
    fn a_kernel_capsule_against_layout_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let bup = v3()
            .entry("kernel", &[1; 64], 0, "")
            .entry("kernel-dtb", &[2; 8], 0, AGX_ENTRY)
            .build();
        let cap = Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&bup);
        let mut o = opened(dir.path(), "tegra-kernel.cap", &cap);
        let specs = BoardSpecs::resolve(None, None, Some(AGX_SPEC));
        let sizes = vec![
            ("A_kernel".to_string(), 64u64),
            ("A_kernel-dtb".to_string(), 8),
            ("B_kernel".to_string(), 63),
            ("B_kernel-dtb".to_string(), 8),
        ];
        let mut i = input(&specs);
        i.partition_sizes = Some(&sizes);
        let out = check(&mut o, &i).unwrap();
        assert_eq!(out.kind, PayloadKind::Kernel);
        assert_eq!(
            out.problems,
            ["B_kernel: the kernel entry is 64 bytes, the partition 63"]
        );
        assert_eq!(out.kernel_writes.len(), 3);
        let w = &out.kernel_writes[0];
        let at = o.file_offset(w.offset) as usize;
        assert_eq!(&cap[at..at + w.length as usize], &[1; 64]);
    }

    fn fake_root(dir: &Path, spec: Option<&str>) -> SysRoot {
        let vars = dir.join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&vars).unwrap();
        if let Some(s) = spec {
            let mut b = vec![7, 0, 0, 0];
            b.extend_from_slice(s.as_bytes());
            std::fs::write(
                vars.join("TegraPlatformSpec-781e084c-a330-417c-b678-38e696380cb9"),
                b,
            )
            .unwrap();
        }
        SysRoot::new(dir)
    }

    #[test]
    fn the_board_from_variables_or_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = fake_root(dir.path(), Some(AGX_SPEC));
        // Variables alone: no identity needed.
        let b = read_board(&root, &IdentityRequest::default()).unwrap();
        assert_eq!(b.specs.full.as_deref(), Some(AGX_SPEC));
        assert_eq!(b.specs.full_source, t234::SpecSource::Variable);
        assert_eq!(b.specs.compat, t234::DEFAULT_COMPAT_SPEC);
        assert!(b.firmware.is_some() && b.derived_spec.is_none());
        // --tnspec is the board, whatever the variables say.
        let req = IdentityRequest {
            tnspec: Some("3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-nvme0n1p1".into()),
            ..IdentityRequest::default()
        };
        let b = read_board(&root, &req).unwrap();
        assert_eq!(
            b.specs.full.as_deref(),
            Some("3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-")
        );
        assert_eq!(
            b.derived_compat.as_deref(),
            Some("3767--0005--1--jetson-orin-nano-devkit-")
        );
        assert_eq!(b.derived_from.as_deref(), Some("--tnspec"));
        // Nothing at all: the identity's error.
        let empty = tempfile::tempdir().unwrap();
        let err = read_board(&SysRoot::new(empty.path()), &IdentityRequest::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("EEPROM"), "{err}");
        let req = IdentityRequest {
            tnspec: Some("3767-300".into()),
            ..IdentityRequest::default()
        };
        assert!(read_board(&root, &req).is_err());
    }

    #[test]
    fn garbage_inside_a_capsule_names_the_capsule() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Builder::new(TEGRA_FMP_IMAGE_TYPE, 1).build(b"NVIDIA__BLOB__V3 but short");
        let p = dir.path().join("bad.cap");
        std::fs::write(&p, cap).unwrap();
        let err = format!("{:#}", open(&p).unwrap_err());
        assert!(
            err.contains("bad.cap: the payload inside the capsule: "),
            "{err}"
        );
    }
}
