//! Test tiers: an environment variable switches a tier on, and the tests of a
//! tier that is off are compiled with `#[ignore]`, so `cargo test` reports them
//! as ignored instead of letting them pass without running.
//!
//! `SYSINSTALL_TEST_ROOT=1` → `cfg(tier_root)`: loop devices, mkfs on block
//! devices, mounts (needs root). `tests/run.sh` sets it; when set, a missing
//! privilege or tool fails the test.

/// (environment variable, cfg name)
const TIERS: &[(&str, &str)] = &[("SYSINSTALL_TEST_ROOT", "tier_root")];

fn main() {
    for (var, cfg) in TIERS {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        println!("cargo:rerun-if-env-changed={var}");
        if std::env::var(var).is_ok_and(|v| v == "1") {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
