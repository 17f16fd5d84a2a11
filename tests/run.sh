#!/usr/bin/env bash
# Runs every test tier: formatting, lints, unit and integration tests (the
# root-only ones run when we are root), then the gated tiers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
export RUST_BACKTRACE=0

echo "== fmt"; cargo fmt --all -- --check
echo "== clippy"; cargo clippy --all-targets --locked -- -D warnings
echo "== tests"; cargo test --all-targets --locked
# Every parser's fuzz target, briefly, so a regression shows (issue 8);
# SYSINSTALL_FUZZ_SECONDS=0 skips.
if [ "${SYSINSTALL_FUZZ_SECONDS:-30}" != 0 ]; then
    echo "== fuzz"; bash fuzz/run.sh "${SYSINSTALL_FUZZ_SECONDS:-30}"
fi
