# shellcheck shell=bash
# What the rootfs benches share. Source it after `set -euo pipefail` and
# `RUNS=...`; then `bench_setup NAME TOOL...`:
#   - changes to the repository's top directory;
#   - fails unless root and every TOOL is there;
#   - makes (or finds cached) the debootstrap rootfs tarballs in $CACHE
#     (benches/make-rootfs.sh; SYSINSTALL_BENCH_CACHE, default
#     /var/tmp/sysinstall-bench);
#   - sets BIN: $SYSINSTALL_BIN, else a fresh `cargo build --release`.
# Helpers: now (seconds, for differences), median (of the numbers on stdin,
# over $RUNS), fresh_disk (a blank 4 GiB disk on a direct-I/O loop device,
# in $work/disk.img; $loop names it).

bench_setup() {
    local name=$1 tool
    shift
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    CACHE=${SYSINSTALL_BENCH_CACHE:-/var/tmp/sysinstall-bench}
    [ "$(id -u)" = 0 ] || { echo "benches/$name: needs root (loop devices, mounts)" >&2; exit 1; }
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            { echo "benches/$name: needs $tool (bash tests/setup.sh, or apt-get install it)" >&2; exit 1; }
    done
    bash benches/make-rootfs.sh "$CACHE" >&2
    if [ -z "${SYSINSTALL_BIN:-}" ]; then
        cargo build --release --quiet
        SYSINSTALL_BIN=${CARGO_TARGET_DIR:-target}/release/sysinstall
    fi
    BIN=$SYSINSTALL_BIN
}

now() { date +%s.%N; }
median() { sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"; }

fresh_disk() { # untimed
    [ -n "${loop:-}" ] && { partx -d "$loop" 2>/dev/null || true; losetup -d "$loop"; }
    rm -f "$work/disk.img"; truncate -s 4G "$work/disk.img"
    loop=$(losetup --direct-io=on -f --show "$work/disk.img")
}
