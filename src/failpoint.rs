//! Named crash points for the interruption tests.
//!
//! `SYSINSTALL_FAILPOINT=name` makes the process kill itself with SIGKILL
//! when it reaches [`hit`]`("name")`: no destructors, no flush, exactly what
//! a power cut or `kill -9` leaves behind. `name@N` fires on the N-th hit
//! (1-based), for points inside loops. `name[@N]:stop` stops the process
//! there instead (SIGSTOP), so that a test can act while it is in the middle
//! of a step (start a second install, send a signal) and then let it go on
//! (SIGCONT). Unset (always, outside tests), a failpoint costs one
//! environment lookup the first time and an atomic load after that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable that arms a failpoint.
pub const ENV: &str = "SYSINSTALL_FAILPOINT";

struct Armed {
    name: String,
    nth: u64,
    stop: bool,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (spec, stop) = match spec.strip_suffix(":stop") {
                Some(s) => (s.to_owned(), true),
                None => (spec, false),
            };
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                stop,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills (or stops) the process if the failpoint `name` is armed and this
/// is the hit it waits for.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    if a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
        use nix::sys::signal::{raise, Signal};
        if a.stop {
            eprintln!("failpoint {name}: stopping (SIGSTOP)");
            let _ = raise(Signal::SIGSTOP);
        } else {
            eprintln!("failpoint {name}: killing myself (SIGKILL)");
            let _ = raise(Signal::SIGKILL);
        }
    }
}
