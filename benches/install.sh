#!/usr/bin/env bash
# Benchmark: a whole install onto a loop device with the demo layout (4 GiB
# sparse image, direct I/O), the old way and with `sysinstall --yes`.
# Prints figures and the ratio; asserts nothing.
#
#   reference   what tegra-sysinstall 1.8 ran: sgdisk --zap-all, one sgdisk
#               call creating every partition from the partition_table CSV,
#               the kernel told (partx -a; partprobe finds nothing on this
#               host), mke2fs DATA LOGS EXTRA, then both slots in parallel:
#               mke2fs, mount, GNU tar -xpf, sync, umount, e2fsck -p
#   sysinstall  sysinstall --yes --layout layouts/demo.xml --device LOOP TARBALL
#               (preflight scan of the tarball included; no payload, so the
#               boot partitions are left alone, as the reference does)
#
# Target (issue 6): sysinstall <= 0.5 x reference.
# Usage: benches/install.sh [RUNS]   (root; default 3, median reported)
# Tarballs: benches/make-rootfs.sh (debootstrap, cached in $SYSINSTALL_BENCH_CACHE).
set -euo pipefail
RUNS=${1:-3}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup install.sh debootstrap sgdisk partx mke2fs e2fsck bc zstd pigz
LAYOUT=layouts/demo.xml

work=$(mktemp -d /var/tmp/sysinstall-bench-install.XXXXXX)
loop=""
cleanup() {
    for m in "$work"/mnt/*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    [ -n "$loop" ] && { partx -d "$loop" 2>/dev/null || true; losetup -d "$loop" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
"$BIN" layout "$LAYOUT" --format csv > "$work/partition_table"


part() { echo "${loop}p$1"; }
num() { awk -F, -v n="$1" '$2 == n { print $1 }' "$work/partition_table"; }

old_slot() { # label tarball
    local dev; dev=$(part "$(num "$1")"); local mnt=$work/mnt/$1
    mkdir -p "$mnt"
    mke2fs -t ext4 -F -q -L "$1" -i 4096 "$dev"
    mount "$dev" "$mnt"
    tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf "$2" -C "$mnt"
    sync; umount "$mnt"; e2fsck -p "$dev" >/dev/null
}

reference() {
    sgdisk "$loop" -a 1 --disk-guid=R --zap-all >/dev/null 2>&1
    local args=(-a 1)
    while IFS=, read -r n name size _type _guid _file start; do
        case "$n" in ''|\#*) continue ;; esac
        if [ "$size" = REMAIN ]; then
            args+=(--largest-new="$n")
        else
            args+=(--new="$n:$start:+$size")
        fi
        args+=(--typecode="$n:0700" --partition-guid="$n:R" -c "$n:$name")
    done < "$work/partition_table"
    sgdisk "$loop" "${args[@]}" >/dev/null
    sgdisk --verify "$loop" >/dev/null
    partx -a "$loop"
    mke2fs -t ext4 -F -q -L DATA -i 4096 "$(part "$(num DATA)")"
    mke2fs -t ext4 -F -q -L LOGS "$(part "$(num LOGS)")"
    mke2fs -t ext4 -F -q -L EXTRA "$(part "$(num EXTRA)")"
    old_slot APP "$1" & local p1=$!
    old_slot APP_b "$1" & local p2=$!
    wait $p1; wait $p2
}

ours() {
    SYSINSTALL_RUNDIR=$work/run "$BIN" --yes --progress none --layout "$LAYOUT" --device "$loop" "$1" \
        >/dev/null 2>"$work/ours.log" || { cat "$work/ours.log" >&2; return 1; }
}

timed() { # fn tarball -> median seconds
    local t=()
    for _ in $(seq "$RUNS"); do
        fresh_disk; sync; cat "$2" >/dev/null
        local t0; t0=$(now); $1 "$2"; t+=("$(echo "$(now) - $t0" | bc -l)")
    done
    printf '%s\n' "${t[@]}" | median
}

echo "sysinstall install benchmark: $(nproc) cores, $(uname -r), $RUNS runs each, median wall time"
echo "binary: $BIN ($(stat -c %s "$BIN") bytes); layout: $LAYOUT on a 4 GiB direct-I/O loop device"
for tb in "$CACHE/rootfs.tar.zst" "$CACHE/rootfs.tar.gz"; do
    echo
    echo "== $(basename "$tb"): $(stat -c %s "$tb") bytes"
    ref=$(timed reference "$tb")
    ours_t=$(timed ours "$tb")
    printf '  %-52s %6.2f s\n' "reference (tegra-sysinstall's commands)" "$ref"
    printf '  %-52s %6.2f s  ratio %.2f (target <= 0.50)\n' "sysinstall --yes" "$ours_t" "$(echo "$ours_t / $ref" | bc -l)"
    echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg))"
done
