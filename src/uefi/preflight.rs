//! The refusals a T234 install makes about its boot firmware before the
//! first write (docs: t234-boot-chain.md §2.1, §8 steps 2–3): things the
//! firmware would refuse at the next boot, after the disk was rewritten and
//! with a new launcher on the ESP (users' "capsule silently not applied"),
//! or that would leave a chain it cannot boot. Pure: capsule facts, the
//! board's missing images ([`crate::bup::t234::missing`]), the running
//! firmware's facts ([`FirmwareState`]) and whether the QSPI layout changes
//! go in; every refusal comes out, each a one-line reason with what to do
//! instead.
//!
//! | rule | why |
//! |---|---|
//! | image type = the running firmware's (ESRT `fw_class`; `bf0d4599-…` for R35/R36 without ESRT) | FMP ignores a capsule for another image type |
//! | signed | FmpDxe authenticates every image; an unsigned one is refused |
//! | `fw_version` ≥ ESRT `lowest_supported_fw_version` | the ratchet: refused below it (status 3) |
//! | every required image has an entry for this board | `IMAGE_NOT_IN_PACKAGE` (6151) otherwise |
//! | QSPI layout changes ⇒ running ≥ R35.5 | only R35.5+ firmware rewrites a chain's QSPI GPT from a capsule |
//!
//! What cannot be checked (no ESRT: an initramfs of a firmware without one,
//! or QEMU) is reported in `notes`, not refused: the firmware still checks
//! it, and refusing would make the install impossible on such systems.

use super::capsule::Capsule;
use super::esrt::FirmwareState;
use super::vars::TEGRA_FMP_IMAGE_TYPE;
use super::version::{FwVersion, R35_5};
use crate::bup::t234::Missing;
use crate::guid::Guid;
use serde::Serialize;

/// The last branch whose capsules all carry [`TEGRA_FMP_IMAGE_TYPE`]; later
/// ones use one image type per configuration (meta-tegra master).
pub const LAST_SHARED_GUID_BRANCH: u32 = 36;

/// Whether the target release's QSPI layout differs from the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QspiLayout {
    /// The same partitions at the same places.
    Same,
    /// It differs (any R35 → R36).
    Differs,
    /// Not compared: a change of branch (35 → 36) is taken as a change.
    Unknown,
}

/// What the rules look at.
#[derive(Debug, Clone)]
pub struct PreflightInput<'a> {
    /// The capsule to stage.
    pub capsule: &'a Capsule,
    /// Images this board would not get from its payload
    /// ([`crate::bup::t234::missing`] with the running firmware's list).
    pub missing: &'a [Missing],
    /// The board's specs as text, for the message (`full / compat`).
    pub board: &'a str,
    /// The running firmware.
    pub firmware: &'a FirmwareState,
    /// The QSPI layout comparison.
    pub qspi_layout: QspiLayout,
}

/// A reason to refuse, with what to do instead. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Refusal {
    /// The capsule is for another firmware image type.
    #[error(
        "the capsule is for firmware image type {found}, this board's firmware is {expected} \
         ({origin}): use the capsule built for this board's firmware"
    )]
    WrongImageType {
        /// The capsule's `UpdateImageTypeId`.
        found: Guid,
        /// What the firmware accepts.
        expected: Guid,
        /// Where `expected` comes from.
        origin: &'static str,
    },
    /// The capsule carries no signature.
    #[error(
        "the capsule is not signed, and the firmware refuses unsigned capsules: use the signed \
         capsule (GenerateCapsule with the signing certificates, as meta-tegra builds tegra-bl.cap)"
    )]
    Unsigned,
    /// Below the ratchet.
    #[error(
        "the capsule's firmware {capsule} is below the lowest version this board accepts, \
         {lowest} (the ratchet in ESRT): the firmware would refuse it; use a capsule of {lowest} \
         or later"
    )]
    BelowLowestSupported {
        /// The capsule's `FwVersion`.
        capsule: FwVersion,
        /// ESRT `lowest_supported_fw_version`.
        lowest: FwVersion,
    },
    /// Images the firmware needs are not in the payload for this board.
    #[error(
        "the payload has no {names} for this board ({board}): the firmware would refuse it \
         (status 6151); use a capsule built for this board, or check its TegraPlatformSpec"
    )]
    MissingImages {
        /// The images, comma-separated.
        names: String,
        /// The specs used.
        board: String,
    },
    /// The QSPI layout changes and the running firmware cannot do that.
    #[error(
        "this release changes the QSPI layout, and the running firmware {running} (older than \
         35.5.0) cannot rewrite a chain's layout from a capsule: first bring both chains to R35.5 \
         or later (apply that release's capsule twice), then install this release"
    )]
    QspiLayoutNeedsR35_5 {
        /// The running firmware.
        running: FwVersion,
    },
    /// The QSPI layout changes and the running firmware is unknown.
    #[error(
        "this release changes the QSPI layout, and the running firmware's version cannot be \
         read (no ESRT, no SystemFwVersions): install from a system booted by UEFI firmware that \
         reports it, after making sure both chains run R35.5 or later"
    )]
    RunningVersionUnknown,
}

/// The rules' outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Reasons to refuse, in the order of the table above.
    pub refusals: Vec<Refusal>,
    /// What could not be checked, and facts worth saying.
    pub notes: Vec<String>,
}

/// Applies every rule.
pub fn check(input: &PreflightInput) -> Verdict {
    let mut v = Verdict::default();
    let c = input.capsule;
    let fw = input.firmware;
    let capsule_version = c.fw_version();

    // Image type: the ESRT entry of the system firmware names it.
    let system = fw.system_entry(None);
    match (system, fw.esrt.as_deref()) {
        (Some(e), _) => {
            let known = fw
                .esrt
                .iter()
                .flatten()
                .any(|x| x.fw_class == c.image_type());
            if !known {
                v.refusals.push(Refusal::WrongImageType {
                    found: c.image_type(),
                    expected: e.fw_class,
                    origin: "ESRT fw_class",
                });
            }
        }
        _ if capsule_version.branch() <= LAST_SHARED_GUID_BRANCH => {
            if c.image_type() != TEGRA_FMP_IMAGE_TYPE {
                v.refusals.push(Refusal::WrongImageType {
                    found: c.image_type(),
                    expected: TEGRA_FMP_IMAGE_TYPE,
                    origin: "the R35/R36 Jetson image type; no ESRT to ask",
                });
            }
        }
        (None, Some(entries)) if !entries.is_empty() => v.notes.push(format!(
            "the ESRT has {} entries but none is the system firmware: the capsule's image type \
             {} was not checked",
            entries.len(),
            c.image_type()
        )),
        _ => v.notes.push(format!(
            "no ESRT: the image type {} of an R{} capsule was not checked",
            c.image_type(),
            capsule_version.branch()
        )),
    }

    if c.auth.is_none() {
        v.refusals.push(Refusal::Unsigned);
    }

    match fw.system_entry(Some(c.image_type())) {
        Some(e) if capsule_version < e.lowest_supported_fw_version => {
            v.refusals.push(Refusal::BelowLowestSupported {
                capsule: capsule_version,
                lowest: e.lowest_supported_fw_version,
            })
        }
        Some(_) => {}
        None => v.notes.push(
            "no ESRT entry for this firmware: the lowest supported version was not checked".into(),
        ),
    }

    if !input.missing.is_empty() {
        let names: Vec<&str> = input.missing.iter().map(|m| m.name.as_str()).collect();
        v.refusals.push(Refusal::MissingImages {
            names: names.join(", "),
            board: input.board.to_owned(),
        });
    }

    let running = fw.running_version(Some(c.image_type()));
    let changes = match (input.qspi_layout, running) {
        (QspiLayout::Same, _) => false,
        (QspiLayout::Differs, _) => true,
        // INFER (t234-boot-chain.md §1.1): the QSPI layout changed between
        // R35 and R36; within a branch it is taken to stay.
        (QspiLayout::Unknown, Some(r)) => {
            let differs = r.branch() != capsule_version.branch();
            if differs {
                v.notes.push(format!(
                    "the QSPI layouts were not compared: {r} → {capsule_version} changes branch, \
                     which is taken as a layout change"
                ));
            }
            differs
        }
        (QspiLayout::Unknown, None) => {
            v.notes.push(
                "the QSPI layouts were not compared and the running firmware is unknown: \
                 whether the firmware can apply a layout change was not checked"
                    .into(),
            );
            false
        }
    };
    if changes {
        match running {
            Some(r) if r < R35_5 => v
                .refusals
                .push(Refusal::QspiLayoutNeedsR35_5 { running: r }),
            Some(_) => {}
            None => v.refusals.push(Refusal::RunningVersionUnknown),
        }
    }

    if let Some(s) = fw.chain_status {
        v.notes.push(format!(
            "BootChainFwStatus is {s} ({}): it would cancel the capsule; the install deletes it",
            super::vars::boot_chain_status_name(s)
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bup::t234::MissingReason;
    use crate::uefi::capsule::Builder;
    use crate::uefi::esrt::{test_support::entry_files, EsrtEntry};

    fn capsule(v: FwVersion) -> Capsule {
        Capsule::parse_bytes(&Builder::new(TEGRA_FMP_IMAGE_TYPE, v.0).build(b"bup")).unwrap()
    }

    fn firmware(running: FwVersion, lsv: FwVersion) -> FirmwareState {
        let e = EsrtEntry::parse("entry0", &entry_files(running.0, lsv.0, 0, 0)).unwrap();
        FirmwareState {
            esrt: Some(vec![e]),
            ..FirmwareState::default()
        }
    }

    fn run(c: &Capsule, fw: &FirmwareState, missing: &[Missing], q: QspiLayout) -> Verdict {
        check(&PreflightInput {
            capsule: c,
            missing,
            board: "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit- / 3701-300-0000--1--jetson-agx-orin-devkit-",
            firmware: fw,
            qspi_layout: q,
        })
    }

    const V36_4_3: FwVersion = FwVersion::new(36, 4, 3);
    const V36_3: FwVersion = FwVersion::new(36, 3, 0);

    #[test]
    fn a_good_capsule_passes() {
        let v = run(
            &capsule(V36_4_3),
            &firmware(V36_3, V36_3),
            &[],
            QspiLayout::Same,
        );
        assert_eq!(v.refusals, []);
        assert_eq!(v.notes, Vec::<String>::new());
    }

    #[test]
    fn wrong_image_type() {
        let mut b = Builder::new(Guid::NIL, V36_4_3.0);
        b.image_type = Guid::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let c = Capsule::parse_bytes(&b.build(b"x")).unwrap();
        let v = run(&c, &firmware(V36_3, V36_3), &[], QspiLayout::Same);
        assert_eq!(
            v.refusals[0].to_string(),
            "the capsule is for firmware image type 11111111-2222-3333-4444-555555555555, this \
             board's firmware is BF0D4599-20D4-414E-B2C5-3595B1CDA402 (ESRT fw_class): use the \
             capsule built for this board's firmware"
        );
        // Without ESRT, an R36 capsule must carry the R35/R36 GUID.
        let none = FirmwareState::default();
        let v = run(&c, &none, &[], QspiLayout::Same);
        assert!(
            matches!(v.refusals[0], Refusal::WrongImageType { expected, .. } if expected == TEGRA_FMP_IMAGE_TYPE)
        );
        // An R38 capsule without ESRT cannot be checked: a note.
        let mut b = Builder::new(Guid::NIL, FwVersion::new(38, 2, 0).0);
        b.image_type = Guid::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let c = Capsule::parse_bytes(&b.build(b"x")).unwrap();
        let v = run(&c, &none, &[], QspiLayout::Same);
        assert_eq!(v.refusals, []);
        assert!(
            v.notes[0].starts_with("no ESRT: the image type"),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn unsigned() {
        let mut b = Builder::new(TEGRA_FMP_IMAGE_TYPE, V36_4_3.0);
        b.cert = None;
        let c = Capsule::parse_bytes(&b.build(b"x")).unwrap();
        let v = run(&c, &firmware(V36_3, V36_3), &[], QspiLayout::Same);
        assert_eq!(v.refusals, [Refusal::Unsigned]);
    }

    #[test]
    fn below_the_ratchet() {
        let v = run(
            &capsule(FwVersion::new(36, 3, 0)),
            &firmware(V36_4_3, V36_4_3),
            &[],
            QspiLayout::Same,
        );
        assert_eq!(
            v.refusals,
            [Refusal::BelowLowestSupported {
                capsule: FwVersion::new(36, 3, 0),
                lowest: V36_4_3
            }]
        );
        assert!(v.refusals[0]
            .to_string()
            .contains("use a capsule of 36.4.3 or later"));
        // Equal to the LSV is fine (meta-tegra sets LSV = the release).
        let v = run(
            &capsule(V36_4_3),
            &firmware(V36_4_3, V36_4_3),
            &[],
            QspiLayout::Same,
        );
        assert_eq!(v.refusals, []);
        // No ESRT: a note.
        let v = run(
            &capsule(V36_4_3),
            &FirmwareState::default(),
            &[],
            QspiLayout::Same,
        );
        assert_eq!(v.refusals, []);
        assert!(v
            .notes
            .iter()
            .any(|n| n.contains("lowest supported version was not checked")));
    }

    #[test]
    fn missing_images() {
        let m = [
            Missing {
                name: "VER".into(),
                reason: MissingReason::Required,
            },
            Missing {
                name: "MB1_BCT".into(),
                reason: MissingReason::NotForBoard,
            },
        ];
        let v = run(
            &capsule(V36_4_3),
            &firmware(V36_3, V36_3),
            &m,
            QspiLayout::Same,
        );
        assert_eq!(v.refusals.len(), 1);
        assert!(v.refusals[0]
            .to_string()
            .starts_with("the payload has no VER, MB1_BCT for this board (3701-500-0000-J.0-1-1"));
    }

    #[test]
    fn a_layout_change_needs_r35_5() {
        let r35_4 = FwVersion::new(35, 4, 1);
        let v = run(
            &capsule(V36_4_3),
            &firmware(r35_4, r35_4),
            &[],
            QspiLayout::Differs,
        );
        assert_eq!(
            v.refusals,
            [Refusal::QspiLayoutNeedsR35_5 { running: r35_4 }]
        );
        assert!(v.refusals[0]
            .to_string()
            .contains("running firmware 35.4.1 (older than 35.5.0)"));
        // Not compared: a branch change counts as a change, with a note.
        let v = run(
            &capsule(V36_4_3),
            &firmware(r35_4, r35_4),
            &[],
            QspiLayout::Unknown,
        );
        assert_eq!(
            v.refusals,
            [Refusal::QspiLayoutNeedsR35_5 { running: r35_4 }]
        );
        assert!(v.notes[0].contains("changes branch"));
        // Same branch, not compared: no change.
        let v = run(
            &capsule(FwVersion::new(35, 4, 1)),
            &firmware(FwVersion::new(35, 3, 1), r35_4),
            &[],
            QspiLayout::Unknown,
        );
        assert_eq!(v.refusals, []);
        // R35.5 can do it.
        let v = run(
            &capsule(V36_4_3),
            &firmware(R35_5, R35_5),
            &[],
            QspiLayout::Differs,
        );
        assert_eq!(v.refusals, []);
        // An explicit Same wins over the branch change.
        let v = run(
            &capsule(V36_4_3),
            &firmware(r35_4, r35_4),
            &[],
            QspiLayout::Same,
        );
        assert_eq!(v.refusals, []);
    }

    #[test]
    fn a_layout_change_with_the_running_version_unknown() {
        let v = run(
            &capsule(V36_4_3),
            &FirmwareState::default(),
            &[],
            QspiLayout::Differs,
        );
        assert!(v.refusals.contains(&Refusal::RunningVersionUnknown));
        // SystemFwVersions of the current chain is enough.
        let fw = FirmwareState {
            current_chain: Some(crate::bup::board::Slot::B),
            system_fw_versions: Some([FwVersion(u32::MAX), FwVersion::new(35, 6, 0)]),
            ..FirmwareState::default()
        };
        let v = run(&capsule(V36_4_3), &fw, &[], QspiLayout::Differs);
        assert_eq!(v.refusals, []);
        let v = run(
            &capsule(V36_4_3),
            &FirmwareState::default(),
            &[],
            QspiLayout::Unknown,
        );
        assert!(!v.refusals.contains(&Refusal::RunningVersionUnknown));
    }

    #[test]
    fn every_rule_is_reported_together() {
        let mut b = Builder::new(Guid::NIL, FwVersion::new(36, 0, 0).0);
        b.cert = None;
        let c = Capsule::parse_bytes(&b.build(b"x")).unwrap();
        let mut fw = firmware(FwVersion::new(35, 4, 1), FwVersion::new(36, 3, 0));
        fw.chain_status = Some(3);
        let m = [Missing {
            name: "VER".into(),
            reason: MissingReason::Required,
        }];
        let v = run(&c, &fw, &m, QspiLayout::Differs);
        let rules: Vec<String> = v
            .refusals
            .iter()
            .map(|r| {
                serde_json::to_value(r).unwrap()["rule"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            rules,
            [
                "wrong_image_type",
                "unsigned",
                "below_lowest_supported",
                "missing_images",
                "qspi_layout_needs_r35_5"
            ]
        );
        assert!(v
            .notes
            .iter()
            .any(|n| n.contains("CANCELED_FOR_FMP_CONFLICT")));
    }
}
