//! The variable writes that finish a T234 install, as an ordered list of
//! operations (docs: t234-boot-chain.md §3.5, §8 step 5), and how one
//! operation is applied. The plan is pure and deterministic: the same
//! decisions give the same list, so an install can journal how many
//! operations are done and, after a power cut, recompute the list and carry
//! on from there. [`apply`] is idempotent: an operation already in effect is
//! recognised and not repeated, and every change is read back.
//!
//! ```text
//!  1. delete BootChainFwStatus      a stale status cancels capsules (FACT,
//!                                   CheckAndCancelUpdate) and makes a later
//!                                   switch request a no-op (INFER, §3.2)
//!  2. delete BootChainFwNext        a pending request cancels capsules too
//!  3. RootfsStatusSlot<X> := 0      for each slot written
//!  4. TegraPlatformSpec, TegraPlatformCompatSpec: created only if missing
//!     (the first is lock-on-create; the firmware matches the capsule to them)
//!  5. either OsIndications := 4     the capsule updates the inactive chain
//!     or     BootChainFwNext := X   and switches to it; a request for the
//!                                   chain that runs is no switch at all
//! ```
//!
//! Never both in step 5: FMP cancels a capsule while either boot-chain
//! variable exists (`CheckAndCancelUpdate`), and the type of [`Finish`]
//! makes both impossible to ask for.

use super::vars::{
    self, StoreError, Var, VarStore, VarValue, OS_INDICATIONS_FILE_CAPSULE_DELIVERY,
    ROOTFS_STATUS_NORMAL,
};
use crate::bup::board::Slot;
use serde::Serialize;
use std::fmt;

/// How the install hands over to the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// A capsule is staged in the ESP: request its processing
    /// (`OsIndications`). The capsule switches to the chain it wrote.
    Capsule,
    /// The firmware stays: request a switch to this chain (`BootChainFwNext`,
    /// what `nvbootctrl set-active-boot-slot` does).
    SwitchTo(Slot),
    /// Neither (a slot rewritten in place, or the chain that already runs).
    Nothing,
}

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// Rootfs slots the install wrote (both on an initial install, the
    /// inactive one on an update).
    pub written_slots: Vec<Slot>,
    /// `TegraPlatformSpec` to create if the variable is missing (`None`
    /// when the board's spec is unknown: nothing is created).
    pub platform_spec: Option<String>,
    /// `TegraPlatformCompatSpec` to create if missing.
    pub compat_spec: Option<String>,
    /// Step 5.
    pub finish: Finish,
    /// The chain that runs now (`BootChainFwCurrent`), when known: a switch
    /// to it is dropped, since the firmware would only record
    /// NO_OPERATION_REQUIRED in a status that then blocks capsules.
    pub current_chain: Option<Slot>,
}

/// One variable operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Delete the variable; done when it is absent.
    Delete {
        /// The variable.
        var: Var,
    },
    /// Set the variable to exactly this value; done when it has it.
    Set {
        /// The variable.
        var: Var,
        /// Attributes and data.
        value: VarValue,
    },
    /// Create the variable only if it does not exist; an existing one is
    /// kept whatever it holds.
    CreateIfMissing {
        /// The variable.
        var: Var,
        /// Attributes and data.
        value: VarValue,
    },
}

impl Op {
    /// The variable operated on.
    pub fn var(&self) -> Var {
        match self {
            Op::Delete { var } | Op::Set { var, .. } | Op::CreateIfMissing { var, .. } => *var,
        }
    }
}

fn show(var: Var, v: &VarValue) -> String {
    match var {
        Var::TegraPlatformSpec | Var::TegraPlatformCompatSpec => {
            format!("'{}'", v.data.escape_ascii())
        }
        _ => match (v.as_u32(var), v.as_u64(var)) {
            (Ok(x), _) => format!("{x:#x}"),
            (_, Ok(x)) => format!("{x:#x}"),
            _ => crate::bytes::hex(&v.data),
        },
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Delete { var } => write!(f, "delete {var}"),
            Op::Set { var, value } => write!(f, "set {var} = {}", show(*var, value)),
            Op::CreateIfMissing { var, value } => {
                write!(f, "create {var} = {} if missing", show(*var, value))
            }
        }
    }
}

/// The ordered operations for `input`.
pub fn plan(input: &PlanInput) -> Vec<Op> {
    let mut ops = vec![
        Op::Delete {
            var: Var::BootChainFwStatus,
        },
        Op::Delete {
            var: Var::BootChainFwNext,
        },
    ];
    for slot in [Slot::A, Slot::B]
        .into_iter()
        .filter(|s| input.written_slots.contains(s))
    {
        ops.push(Op::Set {
            var: Var::rootfs_status(slot),
            value: VarValue::nv_u32(ROOTFS_STATUS_NORMAL),
        });
    }
    for (var, spec) in [
        (Var::TegraPlatformSpec, &input.platform_spec),
        (Var::TegraPlatformCompatSpec, &input.compat_spec),
    ] {
        if let Some(s) = spec {
            ops.push(Op::CreateIfMissing {
                var,
                value: VarValue::nv(s.as_bytes().to_vec()),
            });
        }
    }
    match input.finish {
        Finish::Capsule => ops.push(Op::Set {
            var: Var::OsIndications,
            // Exactly bit 2, as NVIDIA's OTA and meta-tegra write it: a
            // leftover BOOT_TO_FW_UI would stop the board in the setup menu.
            value: VarValue::nv_u64(OS_INDICATIONS_FILE_CAPSULE_DELIVERY),
        }),
        Finish::SwitchTo(chain) if input.current_chain != Some(chain) => ops.push(Op::Set {
            var: Var::BootChainFwNext,
            value: VarValue::nv_u32(vars::chain_value(chain)),
        }),
        Finish::SwitchTo(_) | Finish::Nothing => {}
    }
    ops
}

/// The operations of a second capsule pass from a running system: clear
/// what would cancel the capsule, then request it.
pub fn second_pass() -> Vec<Op> {
    plan(&PlanInput {
        written_slots: Vec::new(),
        platform_spec: None,
        compat_spec: None,
        finish: Finish::Capsule,
        current_chain: None,
    })
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// The variable was changed and read back.
    Changed,
    /// It was already as the operation wants; nothing written.
    AlreadyDone,
    /// `CreateIfMissing` found the variable; `same` says whether it holds
    /// the value we would have written.
    Kept {
        /// The existing value equals ours.
        same: bool,
    },
}

/// Why an operation could not be applied.
#[derive(thiserror::Error)]
pub enum ApplyError {
    /// Reading, writing or deleting failed.
    #[error("{op}: {source}")]
    Store {
        /// The operation, as text.
        op: String,
        /// What the store said.
        source: StoreError,
    },
    /// The variable does not read back as written.
    #[error("{op}: read back {found}, expected {expected}")]
    Verify {
        /// The operation, as text.
        op: String,
        /// What was read.
        found: String,
        /// What was written.
        expected: String,
    },
}

// Debug as Display: these errors reach anyhow, whose vtable links Debug; a
// derived Debug of every variant costs kilobytes of the 3 MiB budget.
impl std::fmt::Debug for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn shown(var: Var, v: &Option<VarValue>) -> String {
    match v {
        None => "nothing (the variable is absent)".into(),
        Some(v) => format!("attributes {:#x}, {}", v.attrs, show(var, v)),
    }
}

/// Applies one operation to `store`: reads first and does nothing when the
/// operation is already in effect, else writes (one write of attributes and
/// data) or deletes and reads back.
pub fn apply(store: &mut dyn VarStore, op: &Op) -> Result<Applied, ApplyError> {
    let var = op.var();
    let io = |source| ApplyError::Store {
        op: op.to_string(),
        source,
    };
    let now = store.read(var).map_err(io)?;
    let want = match op {
        Op::Delete { .. } if now.is_none() => return Ok(Applied::AlreadyDone),
        Op::Delete { .. } => {
            store.delete(var).map_err(io)?;
            None
        }
        Op::Set { value, .. } if now.as_ref() == Some(value) => return Ok(Applied::AlreadyDone),
        Op::CreateIfMissing { value, .. } if now.is_some() => {
            return Ok(Applied::Kept {
                same: now.as_ref().map(|v| &v.data) == Some(&value.data),
            })
        }
        Op::Set { value, .. } | Op::CreateIfMissing { value, .. } => {
            store.write(var, value).map_err(io)?;
            Some(value.clone())
        }
    };
    let back = store.read(var).map_err(io)?;
    if back != want {
        return Err(ApplyError::Verify {
            op: op.to_string(),
            found: shown(var, &back),
            expected: shown(var, &want),
        });
    }
    Ok(Applied::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uefi::vars::MemStore;

    const SPEC: &str = "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-";
    const COMPAT: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";

    fn input(finish: Finish) -> PlanInput {
        PlanInput {
            written_slots: vec![Slot::B],
            platform_spec: Some(SPEC.into()),
            compat_spec: Some(COMPAT.into()),
            finish,
            current_chain: Some(Slot::A),
        }
    }

    fn lines(ops: &[Op]) -> Vec<String> {
        ops.iter().map(|o| o.to_string()).collect()
    }

    #[test]
    fn the_order_of_the_document() {
        assert_eq!(
            lines(&plan(&input(Finish::Capsule))),
            [
                "delete BootChainFwStatus",
                "delete BootChainFwNext",
                "set RootfsStatusSlotB = 0x0",
                &format!("create TegraPlatformSpec = '{SPEC}' if missing"),
                &format!("create TegraPlatformCompatSpec = '{COMPAT}' if missing"),
                "set OsIndications = 0x4",
            ]
        );
        let switch = plan(&input(Finish::SwitchTo(Slot::B)));
        assert_eq!(lines(&switch[5..]), ["set BootChainFwNext = 0x1"]);
        match &switch[5] {
            Op::Set { value, .. } => assert_eq!(value.encode(), [7, 0, 0, 0, 1, 0, 0, 0]),
            o => panic!("{o}"),
        }
    }

    #[test]
    fn never_both_and_never_a_switch_to_the_running_chain() {
        for finish in [
            Finish::Capsule,
            Finish::SwitchTo(Slot::A),
            Finish::SwitchTo(Slot::B),
            Finish::Nothing,
        ] {
            let ops = plan(&input(finish));
            let sets = |v: Var| {
                ops.iter()
                    .filter(|o| matches!(o, Op::Set { var, .. } if *var == v))
                    .count()
            };
            assert!(
                sets(Var::OsIndications) + sets(Var::BootChainFwNext) <= 1,
                "{finish:?}"
            );
            // The deletes come first, whatever the finish.
            assert_eq!(ops[0].var(), Var::BootChainFwStatus);
            assert_eq!(ops[1].var(), Var::BootChainFwNext);
        }
        // Chain A runs: asking for A is nothing to do.
        assert_eq!(plan(&input(Finish::SwitchTo(Slot::A))).len(), 5);
        // Current chain unknown: the request is written.
        let mut i = input(Finish::SwitchTo(Slot::A));
        i.current_chain = None;
        assert_eq!(
            plan(&i).last().unwrap().to_string(),
            "set BootChainFwNext = 0x0"
        );
    }

    #[test]
    fn both_slots_on_an_initial_install_and_no_specs_when_unknown() {
        let i = PlanInput {
            written_slots: vec![Slot::B, Slot::A, Slot::B],
            platform_spec: None,
            compat_spec: None,
            finish: Finish::Nothing,
            current_chain: None,
        };
        assert_eq!(
            lines(&plan(&i)),
            [
                "delete BootChainFwStatus",
                "delete BootChainFwNext",
                "set RootfsStatusSlotA = 0x0",
                "set RootfsStatusSlotB = 0x0",
            ]
        );
        assert_eq!(
            lines(&second_pass()),
            [
                "delete BootChainFwStatus",
                "delete BootChainFwNext",
                "set OsIndications = 0x4"
            ]
        );
    }

    #[test]
    fn applying_clears_stale_state_and_is_idempotent() {
        let mut m = MemStore::default();
        m.vars
            .insert("BootChainFwStatus".into(), VarValue::nv_u32(3));
        m.vars
            .insert("RootfsStatusSlotB".into(), VarValue::nv_u32(0xFF));
        m.vars.insert(
            "TegraPlatformSpec".into(),
            VarValue::nv(b"3701-000-0000-J.0-1-1-other-".to_vec()),
        );
        let ops = plan(&input(Finish::Capsule));
        let first: Vec<Applied> = ops.iter().map(|o| apply(&mut m, o).unwrap()).collect();
        assert_eq!(
            first,
            [
                Applied::Changed,
                Applied::AlreadyDone,
                Applied::Changed,
                Applied::Kept { same: false },
                Applied::Changed,
                Applied::Changed,
            ]
        );
        assert!(!m.vars.contains_key("BootChainFwStatus"));
        assert_eq!(m.vars["RootfsStatusSlotB"].data, [0, 0, 0, 0]);
        assert_eq!(
            m.vars["OsIndications"].encode(),
            [7, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(m.vars["TegraPlatformSpec"].data.starts_with(b"3701-000"));
        // A re-run after a power cut changes nothing.
        let writes = m.log.len();
        for o in &ops {
            assert_ne!(apply(&mut m, o).unwrap(), Applied::Changed, "{o}");
        }
        assert_eq!(m.log.len(), writes);
    }

    /// A store that drops writes, as a variable store that is full would.
    struct Lossy(MemStore);

    impl VarStore for Lossy {
        fn read(&mut self, var: Var) -> Result<Option<VarValue>, StoreError> {
            self.0.read(var)
        }
        fn write(&mut self, _: Var, _: &VarValue) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete(&mut self, _: Var) -> Result<(), StoreError> {
            Err(StoreError::Io("deleting: Operation not permitted".into()))
        }
    }

    #[test]
    fn a_write_that_does_not_read_back_fails() {
        let mut s = Lossy(MemStore::default());
        let op = Op::Set {
            var: Var::BootChainFwNext,
            value: VarValue::nv_u32(1),
        };
        assert_eq!(
            apply(&mut s, &op).unwrap_err().to_string(),
            "set BootChainFwNext = 0x1: read back nothing (the variable is absent), \
             expected attributes 0x7, 0x1"
        );
        s.0.vars
            .insert("BootChainFwStatus".into(), VarValue::nv_u32(3));
        let del = Op::Delete {
            var: Var::BootChainFwStatus,
        };
        assert_eq!(
            apply(&mut s, &del).unwrap_err().to_string(),
            "delete BootChainFwStatus: deleting: Operation not permitted"
        );
    }
}
