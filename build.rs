//! Test tiers: an environment variable switches a tier on, and the tests of a
//! tier that is off are compiled with `#[ignore]`, so `cargo test` reports them
//! as ignored instead of letting them pass without running.
//!
//! `SYSINSTALL_TEST_ROOT=1` → `cfg(tier_root)`: loop devices, mkfs on block
//! devices, mounts (needs root). `tests/run.sh` sets it; when set, a missing
//! privilege or tool fails the test.
//!
//! Static musl release builds (`scripts/build-static.sh`) link without
//! unwind tables: the release profile aborts on panic, so `.eh_frame` is read
//! by nothing but a backtrace, and the tables std and the C libraries bring
//! cost about 220 KB of the 3 MiB aarch64 budget. A panic still prints its
//! message; a `RUST_BACKTRACE` trace is then empty. Other targets (a Yocto
//! toolchain's own triple) link as they always do.
//!
//! The build date (`SYSINSTALL_BUILD_DATE`, `YYYY-MM-DD`, shown by
//! `--version`): `SOURCE_DATE_EPOCH` when set (reproducible builds, Yocto),
//! else the date of the git commit built, else `unknown`. The upgrader's
//! /init takes it as the earliest date the clock can be right.

use std::process::Command;

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
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse::<i64>().ok(),
        Err(_) => git_commit_time(),
    };
    let date = epoch.map_or_else(|| "unknown".to_owned(), civil_date);
    println!("cargo:rustc-env=SYSINSTALL_BUILD_DATE={date}");
    discard_unwind_tables();
}

/// A linker-script fragment that drops the unwind tables of every object;
/// `INSERT` keeps the linker's default layout for everything else.
const NO_UNWIND_TABLES: &str = "\
SECTIONS
{
  /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) *(.gcc_except_table .gcc_except_table.*) }
}
INSERT AFTER .text;
";

fn discard_unwind_tables() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let static_musl = var("TARGET").ends_with("-unknown-linux-musl");
    // `PROFILE` is "release" for the release profile, which sets
    // `panic = "abort"` (cargo does not tell a build script the panic strategy).
    if !(static_musl && var("PROFILE") == "release") {
        return;
    }
    let script = std::path::Path::new(&var("OUT_DIR")).join("no-unwind-tables.ld");
    if let Err(e) = std::fs::write(&script, NO_UNWIND_TABLES) {
        // Linking with the tables is still correct, only larger.
        println!("cargo:warning=writing {}: {e}", script.display());
        return;
    }
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
}

/// The commit time of HEAD; reruns when HEAD moves.
fn git_commit_time() -> Option<i64> {
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let t = git(&["log", "-1", "--format=%ct", "HEAD"])?.parse().ok()?;
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    Some(t)
}

/// `YYYY-MM-DD` (UTC) of a Unix time (days to civil date, proleptic Gregorian).
fn civil_date(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
