//! Ctrl-C, SIGTERM and SIGHUP during an install.
//!
//! The handler only records which signal came (an atomic store, the one
//! thing a handler may safely do) and restores the default action, so a
//! second signal ends the process at once. The install notices at its next
//! check — between steps, and on every read of the rootfs stream — and
//! fails with [`Interrupted`]: the workers stop, what was mounted is
//! unmounted, the journal stays so that a re-run finishes the job, and the
//! FAIL line and the summary event are written like for any failure.
//!
//! The handler is installed without `SA_RESTART`, so a read blocked on a
//! stalled network returns (EINTR) and the check runs.

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals an install handles.
pub const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The install was stopped by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

extern "C" fn record(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
    // SAFETY: restoring the default disposition is async-signal-safe
    // (sigaction(2) is on the list); the next signal then ends the process.
    unsafe {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        if let Ok(s) = Signal::try_from(sig) {
            let _ = signal::sigaction(s, &default);
        }
    }
}

/// Installs the handlers for [`SIGNALS`].
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in SIGNALS {
        // SAFETY: `record` only touches an atomic and calls sigaction.
        unsafe { signal::sigaction(s, &action) }?;
    }
    Ok(())
}

/// The signal received so far, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// `Err(Interrupted)` once a signal has come.
pub fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), |s| Err(Interrupted(s)))
}
