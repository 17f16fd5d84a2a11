#!/usr/bin/env bash
# Prints how long partitioning and planning take: the TX2 test-distro layout
# on a sparse 29 GiB image (61071360 sectors), and, as root, the demo layout
# on a 4 GiB loop device (write + flush + read-back + BLKPG + nodes).
#
#   bash benches/partition.sh            # uses target/release/sysinstall
#   BIN=path/to/sysinstall bash benches/partition.sh
#
# Figures only; nothing here asserts a time.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$target/release/sysinstall}
[ -x "$BIN" ] || cargo build --release --quiet
RUNS=${RUNS:-5}
tx2=tests/data/flash-layouts/r32.5.0-testdistro-flash_jetson-tx2-devkit_custom.xml
work=$(mktemp -d)
lo=
cleanup() {
    if [ -n "$lo" ]; then partx -d "$lo" 2>/dev/null || true; losetup -d "$lo" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Median wall time in milliseconds of RUNS runs of "$@".
median_ms() {
    local t=()
    for _ in $(seq "$RUNS"); do
        local s e
        s=$(date +%s%N)
        "$@" >/dev/null 2>&1
        e=$(date +%s%N)
        t+=($(( (e - s) / 1000000 )))
    done
    printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

echo "binary: $BIN ($(stat -c %s "$BIN") bytes), runs: $RUNS (median)"
if [ -f "$tx2" ]; then
    img=$work/tx2.img
    truncate -s $((61071360 * 512)) "$img"
    sets=(--set APPSIZE=6442450944 --set LNXSIZE=83886080 --set RECROOTFSSIZE=314572800)
    echo "partition, TX2 layout (36 partitions), sparse image:  $(median_ms "$BIN" partition --yes --layout "$tx2" "${sets[@]}" --device "$img") ms"
    echo "plan, same image (layout in place):                    $(median_ms "$BIN" plan --layout "$tx2" "${sets[@]}" --device "$img") ms"
    echo "partition --dry-run, same image:                       $(median_ms "$BIN" partition --dry-run --layout "$tx2" "${sets[@]}" --device "$img") ms"
else
    echo "SKIP image figures: $tx2 not found"
fi
if [ "$(id -u)" = 0 ]; then
    img=$work/demo.img
    truncate -s 4G "$img"
    lo=$(losetup -f --show "$img")
    echo "partition, demo layout (32 partitions), loop device:  $(median_ms "$BIN" partition --yes --layout layouts/demo.xml --device "$lo") ms"
else
    echo "SKIP loop-device figure: needs root"
fi
