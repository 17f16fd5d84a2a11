#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time; fails on the first
# target that crashes (panic, failed invariant, abort, timeout, out of memory).
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 30 (what CI uses)
#   TARGET              default: every fuzz_targets/*.rs
# Environment:
#   FUZZ_TARGET_DIR     cargo target dir for the instrumented build
#                       (default: target/fuzz in the repository)
#   FUZZ_SANITIZER      none (default) or address
#   FUZZ_JOBS           targets run at once (default 1)
#
# The machine has a stable toolchain only: cargo-fuzz's -Z flags are enabled
# with RUSTC_BOOTSTRAP=1. cargo-fuzz itself is installed when missing.
# A crashing input is kept in fuzz/artifacts/<target>/; replay it with
#   fuzz/run.sh --replay <target> <file>
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
export RUSTC_BOOTSTRAP=1
export RUST_BACKTRACE=1
target_dir="${FUZZ_TARGET_DIR:-$repo/target/fuzz}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

build() {
    local t0=$SECONDS
    cargo fuzz build --fuzz-dir "$fuzz" --target-dir "$target_dir" -s "$sanitizer" "$@"
    echo "fuzz: build took $((SECONDS - t0)) s" >&2
}

if [ "${1:-}" = "--replay" ]; then
    [ $# -eq 3 ] || { echo "usage: $0 --replay TARGET FILE" >&2; exit 2; }
    build "$2"
    exec "$bin_dir/$2" "$3"
fi

secs="${1:-30}"
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

build
[ -d "$fuzz/corpus" ] || FUZZ_SEEDS_TARGET_DIR="$target_dir/seeds" bash "$fuzz/seeds.sh"

# Runs one target; prints one summary line; returns non-zero on a crash.
run_one() {
    local t="$1" corpus="$fuzz/corpus/$1" art="$fuzz/artifacts/$1"
    mkdir -p "$corpus" "$art"
    local log="$art/last-run.log" rc=0 t0=$SECONDS dict=()
    [ -f "$fuzz/dicts/$t.dict" ] && dict=(-dict="$fuzz/dicts/$t.dict")
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: memory blow-up.
    "$bin_dir/$t" "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" >"$log" 2>&1 || rc=$?
    local execs cov units
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
    units="$(find "$corpus" -type f | wc -l)"
    printf 'fuzz: %-12s %4d s %10s execs %7s execs/s  cov %5s  corpus %5d  %s\n' \
        "$t" "$((SECONDS - t0))" "${execs:-?}" \
        "$(( ${execs:-0} / ( SECONDS - t0 > 0 ? SECONDS - t0 : 1 ) ))" \
        "${cov:-?}" "$units" "$([ $rc -eq 0 ] && echo ok || echo "CRASH (exit $rc)")"
    if [ $rc -ne 0 ]; then
        grep -E 'panicked|SUMMARY|fuzz: allocation|ERROR|Test unit written' "$log" | head -8 | sed 's/^/    /'
        echo "    log: $log"
        return 1
    fi
}

failed=0
running=0
for t in "${targets[@]}"; do
    [ -x "$bin_dir/$t" ] || { echo "fuzz: no target '$t'" >&2; exit 2; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done
[ $failed -eq 0 ] || echo "fuzz: a target crashed: inputs and logs in fuzz/artifacts/" >&2
# The closing line CI reads: targets that ran their time without a crash.
echo "fuzz: $((${#targets[@]} - failed)) passed, $failed failed"
[ $failed -eq 0 ]
