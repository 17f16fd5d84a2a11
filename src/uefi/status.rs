//! After the reboot: what became of the capsule, and whether the other
//! chain needs a second pass (docs: t234-boot-chain.md §2.1 "only the
//! inactive chain is updated", §8 step 6). Pure: a [`FirmwareState`] in, a
//! [`Report`] out; `sysinstall status` prints it and can stage the second
//! pass, which [`stage_decision`] allows or refuses.
//!
//! How the facts are read:
//! * the ESRT's `last_attempt_version`/`last_attempt_status` say whether the
//!   last capsule was applied; a capsule writes the inactive chain and
//!   switches BR-BCT to it (FACT, `TegraFmp.c`), so the chain that runs is
//!   the one it wrote, unless its boot failed and the firmware went back
//!   (INFER: then `SystemFwVersions` shows the capsule's version on the
//!   chain that does not run, which is how it is recognised here);
//! * `SystemFwVersions` holds both chains' versions: when they differ, a
//!   second capsule of the running version brings the other chain level;
//! * `BootChainFwStatus` left behind cancels the next capsule, whatever its
//!   value; `OsIndications` bit 2 means a capsule is requested for the next
//!   boot.

use super::esrt::{last_attempt_status_text, FirmwareState};
use super::vars::{self, OS_INDICATIONS_FILE_CAPSULE_DELIVERY, ROOTFS_STATUS_UNBOOTABLE};
use super::version::FwVersion;
use crate::bup::board::Slot;
use serde::Serialize;

/// What became of the last capsule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CapsuleOutcome {
    /// No ESRT entry for the system firmware: cannot be told.
    Unknown,
    /// The firmware records no capsule attempt.
    NoneAttempted,
    /// Applied.
    Applied {
        /// Its version.
        version: FwVersion,
        /// The chain holding it, when that can be told.
        chain: Option<Slot>,
        /// That chain is the one running.
        running: bool,
    },
    /// Tried and refused or failed.
    Failed {
        /// Its version.
        version: FwVersion,
        /// `last_attempt_status`.
        status: u32,
        /// The status in words.
        text: String,
    },
}

/// Whether the other chain lags behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SecondPass {
    /// Both chains run the same version.
    NotNeeded,
    /// `chain` runs `from`; a capsule of `to` (the running version) levels it.
    Needed {
        /// The lagging chain.
        chain: Slot,
        /// Its version (`None` if the firmware could not read it).
        from: Option<FwVersion>,
        /// The running chain's version.
        to: FwVersion,
    },
    /// The other chain has newer firmware than the running one.
    OtherNewer {
        /// The other chain.
        chain: Slot,
        /// Its version.
        version: FwVersion,
        /// The running chain's.
        running: FwVersion,
    },
    /// Cannot be told.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The state of the boot firmware, in the terms an operator needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The chain that booted.
    pub running_chain: Option<Slot>,
    /// Its firmware version.
    pub running_version: Option<FwVersion>,
    /// The ratchet.
    pub lowest_supported: Option<FwVersion>,
    /// `SystemFwVersions`: chain A, chain B (`None` where unreadable).
    pub chain_versions: [Option<FwVersion>; 2],
    /// The last capsule.
    pub capsule: CapsuleOutcome,
    /// A capsule is requested for the next boot (`OsIndications` bit 2).
    pub capsule_requested: bool,
    /// `BootChainFwNext`, when set.
    pub switch_requested: Option<u32>,
    /// `BootChainFwStatus`, when set.
    pub chain_status: Option<u32>,
    /// `RootfsStatusSlotA`, `RootfsStatusSlotB`.
    pub rootfs_status: [Option<u32>; 2],
    /// The second pass.
    pub second_pass: SecondPass,
    /// What needs doing, one line each; empty when all is well.
    pub attention: Vec<String>,
}

impl Report {
    /// True when something needs doing.
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }
}

fn chain_text(c: Option<Slot>) -> String {
    c.map_or_else(|| "?".into(), |c| c.letter().to_owned())
}

/// Reads the state.
pub fn report(s: &FirmwareState) -> Report {
    let entry = s.system_entry(None);
    let running_chain = s.current_chain;
    let running_version = s.running_version(None);
    let chain_versions = [s.chain_version(Slot::A), s.chain_version(Slot::B)];
    let mut attention = Vec::new();

    let capsule = match entry {
        None => CapsuleOutcome::Unknown,
        Some(e) if e.last_attempt_version.0 == 0 && e.last_attempt_status == 0 => {
            CapsuleOutcome::NoneAttempted
        }
        Some(e) if e.last_attempt_succeeded() => {
            let v = e.last_attempt_version;
            let holders: Vec<Slot> = [Slot::A, Slot::B]
                .into_iter()
                .filter(|c| chain_versions.get(c.index()).copied().flatten() == Some(v))
                .collect();
            let chain = match (holders.as_slice(), running_chain) {
                ([one], _) => Some(*one),
                ([_, _], Some(r)) => Some(r),
                _ => running_chain.filter(|_| e.fw_version == v),
            };
            let running = chain.is_some() && chain == running_chain;
            if chain.is_some() && !running {
                attention.push(format!(
                    "the capsule {v} was applied to chain {} but chain {} runs: did its boot fail \
                     and roll back?",
                    chain_text(chain),
                    chain_text(running_chain)
                ));
            }
            CapsuleOutcome::Applied {
                version: v,
                chain,
                running,
            }
        }
        Some(e) => {
            let text = last_attempt_status_text(e.last_attempt_status);
            attention.push(format!(
                "the last capsule ({}) was not applied: {text}",
                e.last_attempt_version
            ));
            CapsuleOutcome::Failed {
                version: e.last_attempt_version,
                status: e.last_attempt_status,
                text,
            }
        }
    };

    let other = running_chain.map(Slot::other);
    let second_pass = match (running_chain, running_version, other) {
        (Some(_), Some(run), Some(o)) if s.system_fw_versions.is_some() => {
            match chain_versions.get(o.index()).copied().flatten() {
                Some(v) if v == run => SecondPass::NotNeeded,
                Some(v) if v > run => SecondPass::OtherNewer {
                    chain: o,
                    version: v,
                    running: run,
                },
                from => SecondPass::Needed {
                    chain: o,
                    from,
                    to: run,
                },
            }
        }
        (None, ..) => SecondPass::Unknown {
            reason: "BootChainFwCurrent is not readable".into(),
        },
        (_, None, _) => SecondPass::Unknown {
            reason: "the running firmware's version is unknown".into(),
        },
        _ => SecondPass::Unknown {
            reason: "no SystemFwVersions".into(),
        },
    };
    match &second_pass {
        SecondPass::Needed { chain, from, to } => attention.push(format!(
            "chain {} has firmware {}, the running chain {to}: stage the {to} capsule once more \
             (sysinstall status --stage CAPSULE) so both chains match",
            chain.letter(),
            from.map_or_else(|| "that cannot be read".into(), |v| v.to_string()),
        )),
        SecondPass::OtherNewer {
            chain,
            version,
            running,
        } => attention.push(format!(
            "chain {} has newer firmware ({version}) than the running chain ({running}): an \
             update that did not boot?",
            chain.letter()
        )),
        _ => {}
    }
    if let Some(st) = s.chain_status {
        attention.push(format!(
            "BootChainFwStatus is {st} ({}): it cancels the next capsule; staging a capsule \
             deletes it",
            vars::boot_chain_status_name(st)
        ));
    }
    for slot in [Slot::A, Slot::B] {
        if s.rootfs_status.get(slot.index()).copied().flatten() == Some(ROOTFS_STATUS_UNBOOTABLE) {
            attention.push(format!(
                "rootfs slot {} is marked unbootable (RootfsStatusSlot{} = 0xff)",
                slot.letter(),
                slot.letter()
            ));
        }
    }
    attention.extend(s.unreadable.iter().cloned());
    Report {
        running_chain,
        running_version,
        lowest_supported: entry.map(|e| e.lowest_supported_fw_version),
        chain_versions,
        capsule,
        capsule_requested: s
            .os_indications
            .is_some_and(|v| v & OS_INDICATIONS_FILE_CAPSULE_DELIVERY != 0),
        switch_requested: s.next_chain,
        chain_status: s.chain_status,
        rootfs_status: s.rootfs_status,
        second_pass,
        attention,
    }
}

/// Whether a capsule may be staged as the second pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageDecision {
    /// Stage it.
    Stage,
    /// Nothing to do, and why.
    NothingToDo(String),
    /// Refused, with the one-line reason.
    Refuse(String),
}

/// Decides whether a capsule of `capsule` brings the other chain level: it
/// must carry the running version, and the other chain must lag.
pub fn stage_decision(r: &Report, capsule: FwVersion) -> StageDecision {
    let carry = |to: FwVersion| {
        if capsule == to {
            StageDecision::Stage
        } else {
            StageDecision::Refuse(format!(
                "the capsule carries firmware {capsule}, the running chain {to}: a second pass \
                 must carry the running version (give that release's capsule)"
            ))
        }
    };
    match &r.second_pass {
        SecondPass::NotNeeded => StageDecision::NothingToDo(format!(
            "both chains run {}: no second pass is needed",
            r.running_version
                .map_or_else(|| "the same firmware".into(), |v| v.to_string())
        )),
        SecondPass::Needed { to, .. } => carry(*to),
        SecondPass::OtherNewer { chain, version, .. } => StageDecision::Refuse(format!(
            "chain {} has newer firmware ({version}) than the running one: a second pass would \
             take it back; find out why the newer chain does not run first",
            chain.letter()
        )),
        SecondPass::Unknown { reason } => match r.running_version {
            Some(run) => carry(run),
            None => StageDecision::Refuse(format!(
                "the chains' versions cannot be told ({reason}): not staging a second pass"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uefi::esrt::{test_support::entry_files, EsrtEntry};

    const V36_4_3: FwVersion = FwVersion::new(36, 4, 3);
    const V35_6: FwVersion = FwVersion::new(35, 6, 0);

    fn state(
        running: FwVersion,
        last: u32,
        status: u32,
        chain: Slot,
        versions: [u32; 2],
    ) -> FirmwareState {
        let e =
            EsrtEntry::parse("entry0", &entry_files(running.0, running.0, last, status)).unwrap();
        FirmwareState {
            esrt: Some(vec![e]),
            current_chain: Some(chain),
            system_fw_versions: Some(versions.map(FwVersion)),
            ..FirmwareState::default()
        }
    }

    #[test]
    fn applied_to_the_running_chain_and_a_second_pass_needed() {
        // The capsule wrote B, the board switched to B; A still runs 35.6.
        let r = report(&state(V36_4_3, V36_4_3.0, 0, Slot::B, [V35_6.0, V36_4_3.0]));
        assert_eq!(
            r.capsule,
            CapsuleOutcome::Applied {
                version: V36_4_3,
                chain: Some(Slot::B),
                running: true
            }
        );
        assert_eq!(
            r.second_pass,
            SecondPass::Needed {
                chain: Slot::A,
                from: Some(V35_6),
                to: V36_4_3
            }
        );
        assert_eq!(r.attention.len(), 1);
        assert!(r.attention[0].starts_with("chain A has firmware 35.6.0, the running chain 36.4.3"));
        assert_eq!(stage_decision(&r, V36_4_3), StageDecision::Stage);
        assert!(
            matches!(stage_decision(&r, V35_6), StageDecision::Refuse(m) if m.contains("must carry the running version"))
        );
    }

    #[test]
    fn both_chains_level() {
        let r = report(&state(V36_4_3, V36_4_3.0, 0, Slot::A, [V36_4_3.0; 2]));
        assert_eq!(r.second_pass, SecondPass::NotNeeded);
        assert!(!r.needs_attention());
        // Both chains hold it: the running one is named.
        assert!(matches!(
            r.capsule,
            CapsuleOutcome::Applied {
                chain: Some(Slot::A),
                running: true,
                ..
            }
        ));
        assert!(matches!(
            stage_decision(&r, V36_4_3),
            StageDecision::NothingToDo(_)
        ));
    }

    #[test]
    fn a_failed_capsule_and_a_leftover_status() {
        let mut s = state(V35_6, V36_4_3.0, 6163, Slot::A, [V35_6.0; 2]);
        s.chain_status = Some(3);
        s.rootfs_status = [None, Some(0xFF)];
        let r = report(&s);
        assert_eq!(
            r.capsule,
            CapsuleOutcome::Failed {
                version: V36_4_3,
                status: 6163,
                text: "Tegra FMP error 6163: BOOT_CHAIN_UPDATE_CANCELED".into()
            }
        );
        assert_eq!(
            r.attention,
            [
                "the last capsule (36.4.3) was not applied: Tegra FMP error 6163: BOOT_CHAIN_UPDATE_CANCELED",
                "BootChainFwStatus is 3 (CANCELED_FOR_FMP_CONFLICT): it cancels the next capsule; staging a capsule deletes it",
                "rootfs slot B is marked unbootable (RootfsStatusSlotB = 0xff)",
            ]
        );
    }

    #[test]
    fn a_rollback_to_the_old_chain() {
        // The capsule went to B, B did not boot, A runs again with 35.6.
        let r = report(&state(V35_6, V36_4_3.0, 0, Slot::A, [V35_6.0, V36_4_3.0]));
        assert!(matches!(
            r.capsule,
            CapsuleOutcome::Applied {
                chain: Some(Slot::B),
                running: false,
                ..
            }
        ));
        assert!(matches!(
            r.second_pass,
            SecondPass::OtherNewer { chain: Slot::B, .. }
        ));
        assert_eq!(r.attention.len(), 2);
        assert!(
            matches!(stage_decision(&r, V35_6), StageDecision::Refuse(m) if m.contains("newer firmware"))
        );
    }

    #[test]
    fn without_esrt_or_versions() {
        let r = report(&FirmwareState::default());
        assert_eq!(r.capsule, CapsuleOutcome::Unknown);
        assert!(
            matches!(&r.second_pass, SecondPass::Unknown { reason } if reason.contains("BootChainFwCurrent"))
        );
        assert!(matches!(
            stage_decision(&r, V36_4_3),
            StageDecision::Refuse(_)
        ));
        let none = report(&state(V36_4_3, 0, 0, Slot::A, [V36_4_3.0; 2]));
        assert_eq!(none.capsule, CapsuleOutcome::NoneAttempted);
        // No SystemFwVersions but a running version: a capsule of it may go.
        let mut s = state(V36_4_3, 0, 0, Slot::A, [0; 2]);
        s.system_fw_versions = None;
        s.os_indications = Some(4);
        let r = report(&s);
        assert!(r.capsule_requested);
        assert!(
            matches!(&r.second_pass, SecondPass::Unknown { reason } if reason == "no SystemFwVersions")
        );
        assert_eq!(stage_decision(&r, V36_4_3), StageDecision::Stage);
        // An unreadable chain version counts as lagging.
        let r = report(&state(V36_4_3, 0, 0, Slot::B, [u32::MAX, V36_4_3.0]));
        assert_eq!(
            r.second_pass,
            SecondPass::Needed {
                chain: Slot::A,
                from: None,
                to: V36_4_3
            }
        );
    }
}
