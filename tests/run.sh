#!/usr/bin/env bash
# Runs every test tier, each switched on here, so that nothing passes without
# running: formatting, lints, the dependency checks, the unit and integration
# tests with the root tier on (loop devices, mkfs, mounts), the static builds
# with their size budget, the Yocto lint, the real-kernel tiers under qemu (the
# SD card tier, tests/qemu/run.sh, the UEFI/NVMe tier, tests/qemu/uefi.sh, and
# the Jumpstarter tier, tests/qemu/jumpstarter.sh: the driver in contrib/, its
# unit tests and one install through it) and every fuzz target for a bounded
# time. Needs root.
#   SYSINSTALL_TEST_QEMU=0       leave the qemu tiers out (about 5 + 4 + 4 minutes)
#   SYSINSTALL_FUZZ_SECONDS=N    seconds per fuzz target (default 30; 0 leaves it out)
# A tier left out is named in the summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tests/run.sh: the root tier needs root (sudo bash tests/run.sh)" >&2; exit 1; }

bash tests/setup.sh
export RUST_BACKTRACE=0
export SYSINSTALL_TEST_ROOT=1
summary=()
step() { echo; echo "== $1 ($(date +%T))"; }

step fmt; cargo fmt --all -- --check
step "crates.inc"; python3 yocto/scripts/update-crates-inc.py --check
step msrv; python3 scripts/check-msrv.py
step clippy; cargo clippy --all-targets --locked -- -D warnings

step tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets --locked 2>&1 | tee "$log"
# Every "test result:" line of libtest, summed. With every tier on, an
# ignored test is one that did not run: that fails the run.
read -r passed failed ignored < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) g += $i
        } }
    END { print p + 0, f + 0, g + 0 }' "$log")
root_tier=$(grep -rh 'cfg_attr(not(tier_root), ignore' src tests | wc -l)
summary+=("cargo tests: $passed passed, $failed failed, $ignored ignored (root tier: $root_tier tests, on)")
if [ "$ignored" != 0 ]; then
    echo "tests/run.sh: $ignored tests were ignored although every tier is on:" >&2
    grep -E '^test .* \.\.\. ignored' "$log" >&2 || true
    exit 1
fi

step "static builds"; bash scripts/build-static.sh --no-setup
step "yocto lint"; bash yocto/scripts/oelint.sh
# The qemu tiers (the SD card one, the UEFI/NVMe one, the Jumpstarter one),
# each counted by its last line, "NAME: N passed, M failed"; all run even when
# one fails, and any failure fails the run.
if [ "${SYSINSTALL_TEST_QEMU:-1}" != 0 ]; then
    qemu_failed=0
    for tier in "qemu tier:tests/qemu/run.sh" "qemu UEFI tier:tests/qemu/uefi.sh" \
            "qemu Jumpstarter tier:tests/qemu/jumpstarter.sh"; do
        step "${tier%%:*}"
        started=$SECONDS
        rc=0
        SYSINSTALL_TEST_QEMU=1 bash "${tier#*:}" 2>&1 | tee "$log" || rc=$?
        count=$(sed -n 's/^.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1 passed, \2 failed/p' "$log" | tail -n 1)
        summary+=("${tier%%:*}: on, ${count:-no count} ($((SECONDS - started)) s)$( ((rc == 0)) || echo ", FAILED (status $rc)")")
        ((rc == 0)) || qemu_failed=1
    done
    if ((qemu_failed)); then
        step "done"
        printf '   %s\n' "${summary[@]}"
        exit 1
    fi
else
    summary+=("qemu tiers (SD card, UEFI, Jumpstarter): LEFT OUT (SYSINSTALL_TEST_QEMU=0)")
fi
if [ "${SYSINSTALL_FUZZ_SECONDS:-30}" != 0 ]; then
    step fuzz; bash fuzz/run.sh "${SYSINSTALL_FUZZ_SECONDS:-30}"
    summary+=("fuzz tier: on, ${SYSINSTALL_FUZZ_SECONDS:-30} s per target, no crash")
else
    summary+=("fuzz tier: LEFT OUT (SYSINSTALL_FUZZ_SECONDS=0)")
fi
step "done"
printf '   %s\n' "${summary[@]}"
