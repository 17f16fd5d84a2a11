//! Named crash points for the interruption tests.
//!
//! `SYSINSTALL_FAILPOINT=name` makes the process kill itself with SIGKILL
//! when it reaches [`hit`]`("name")`: no destructors, no flush, exactly what
//! a power cut or `kill -9` leaves behind. `name@N` fires on the N-th hit
//! (1-based), for points inside loops. Unset (always, outside tests), a
//! failpoint costs one environment lookup the first time and an atomic load
//! after that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable that arms a failpoint.
pub const ENV: &str = "SYSINSTALL_FAILPOINT";

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills the process with SIGKILL if the failpoint `name` is armed and this
/// is the hit it waits for.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    if a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
        eprintln!("failpoint {name}: killing myself (SIGKILL)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
