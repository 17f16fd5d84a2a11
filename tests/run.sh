#!/usr/bin/env bash
# Runs every test tier: formatting, lints, unit and integration tests (the
# root tier on loop devices runs when we are root and skips visibly
# otherwise), the static builds with their size budget, the Yocto lint, the
# real-kernel tier under qemu, and every fuzz target for a bounded time.
#   SYSINSTALL_TEST_QEMU=0       skip the qemu tier (about 10 minutes)
#   SYSINSTALL_FUZZ_SECONDS=N    seconds per fuzz target (default 30; 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
export RUST_BACKTRACE=0
step() { echo; echo "== $1 ($(date +%T))"; }

step fmt; cargo fmt --all -- --check
step "crates.inc"; python3 yocto/scripts/update-crates-inc.py --check
step msrv; python3 scripts/check-msrv.py
step clippy; cargo clippy --all-targets --locked -- -D warnings
step tests; cargo test --all-targets --locked
step "static builds"; bash scripts/build-static.sh --no-setup
step "yocto lint"; bash yocto/scripts/oelint.sh
step qemu; SYSINSTALL_TEST_QEMU=${SYSINSTALL_TEST_QEMU:-1} bash tests/qemu/run.sh
if [ "${SYSINSTALL_FUZZ_SECONDS:-30}" != 0 ]; then
    step fuzz; bash fuzz/run.sh "${SYSINSTALL_FUZZ_SECONDS:-30}"
fi
step done
