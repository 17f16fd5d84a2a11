#!/usr/bin/env bash
# Benchmark: installing one rootfs tarball into two slots (APP, APP_b) on
# loop devices, the old way and with sysinstall. Prints figures and ratios;
# asserts nothing (timing goals live here, not in tests).
#
#   reference   what tegra-sysinstall ran, both slots in parallel, each:
#               mke2fs; mount; GNU tar --xattrs --acls -xpf; sync; umount; e2fsck -p
#   ref + copy  the same, preceded by what it also did first: copy the tarball
#               to a temp dir on EXTRA (cp + sync)
#   sysinstall  mke2fs both (parallel); mount; `sysinstall unpack TARBALL A B`
#               (one decompression, both slots, syncfs); umount; e2fsck -p both
#   tar 1 slot  GNU tar -xpf into one fresh slot + sync (the unpack alone)
#   ours 2 slot `sysinstall unpack` into both fresh slots (the unpack alone)
#
# Targets (issue 4): sysinstall ≤ 0.6 × reference; ours 2 slots ≤ 1.0 × tar
# 1 slot; peak RSS of sysinstall < 64 MiB.
#
# Usage: benches/unpack.sh [RUNS]   (root; default 3 runs, median reported)
# The tarballs come from benches/make-rootfs.sh (debootstrap, cached in
# $SYSINSTALL_BENCH_CACHE, default /var/tmp/sysinstall-bench).
set -euo pipefail
RUNS=${1:-3}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup unpack.sh debootstrap pigz zstd bc /usr/bin/time mke2fs losetup

work=$(mktemp -d /var/tmp/sysinstall-bench-run.XXXXXX)
loops=()
cleanup() {
    for m in "$work"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
for s in a b x; do
    truncate -s 3G "$work/$s.img"
    # Direct I/O: the loop device writes through to the disk like a real one,
    # instead of into a second page cache.
    loops+=("$(losetup --direct-io=on -f --show "$work/$s.img")")
    mkdir -p "$work/mnt-$s"
done
A=${loops[0]} B=${loops[1]} X=${loops[2]} MA=$work/mnt-a MB=$work/mnt-b MX=$work/mnt-x
mke2fs -t ext4 -F -q -L EXTRA "$X"

mkfs_slot() { mke2fs -t ext4 -F -q -L "$2" -i 4096 "$1"; }
gnu_x() { tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf "$1" -C "$2"; }

old_slot() { # dev label tarball mnt: one slot as tegra-sysinstall did it
    mkfs_slot "$1" "$2"; mount "$1" "$4"; gnu_x "$3" "$4"; sync; umount "$4"; e2fsck -p "$1" >/dev/null
}
reference() {
    old_slot "$A" APP "$1" "$MA" & local p1=$!
    old_slot "$B" APP_b "$1" "$MB" & local p2=$!
    wait $p1; wait $p2
}
reference_copy() {
    mount "$X" "$MX"; mkdir -p "$MX/tmp"; cp "$1" "$MX/tmp/"; sync
    reference "$MX/tmp/$(basename "$1")"
    rm -rf "$MX/tmp"; umount "$MX"
}
ours() {
    mkfs_slot "$A" APP & local p1=$!
    mkfs_slot "$B" APP_b & local p2=$!
    wait $p1; wait $p2
    mount "$A" "$MA"; mount "$B" "$MB"
    /usr/bin/time -f %M -o "$work/rss" "$BIN" unpack --progress none "$1" "$MA" "$MB" >/dev/null
    umount "$MA"; umount "$MB"
    e2fsck -p "$A" >/dev/null & p1=$!
    e2fsck -p "$B" >/dev/null & p2=$!
    wait $p1; wait $p2
}
fresh() { # mkfs and mount both slots, untimed
    for m in "$MA" "$MB"; do mountpoint -q "$m" && umount "$m"; done
    mkfs_slot "$A" APP; mkfs_slot "$B" APP_b; mount "$A" "$MA"; mount "$B" "$MB"
}
tar_one() { gnu_x "$1" "$MA"; sync; }
ours_two() { /usr/bin/time -f %M -o "$work/rss" "$BIN" unpack --progress none "$1" "$MA" "$MB" >/dev/null; }

cpu_of() { # user+sys seconds of the children in a `times` output file
    tail -1 "$1" | sed 's/[ms]/ /g' | awk '{ print $1 * 60 + $2 + $3 * 60 + $4 }'
}

timed() { # name fn tarball [setup-fn] -> "name median-wall max-rss median-cpu"
    local name=$1 fn=$2 tb=$3 setup=${4:-} t=() rss=() c=()
    for _ in $(seq "$RUNS"); do
        [ -n "$setup" ] && $setup
        sync; cat "$tb" >/dev/null
        # `times` must run in this shell (not in $(...)) to see its children.
        local t0 t1; times >"$work/times0"; t0=$(now); $fn "$tb"; t1=$(now); times >"$work/times1"
        t+=("$(echo "$t1 - $t0" | bc -l)")
        c+=("$(echo "$(cpu_of "$work/times1") - $(cpu_of "$work/times0")" | bc -l)")
        if [ -s "$work/rss" ]; then rss+=("$(cat "$work/rss")"); : >"$work/rss"; fi
    done
    for m in "$MA" "$MB" "$MX"; do mountpoint -q "$m" && umount "$m"; done
    local med; med=$(printf '%s\n' "${t[@]}" | median)
    local maxrss=0; ((${#rss[@]})) && maxrss=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
    local cmed; cmed=$(printf '%s\n' "${c[@]}" | median)
    printf '%s %s %s %s\n' "$name" "$med" "$maxrss" "$cmed"
}

echo "sysinstall unpack benchmark: $(nproc) cores, $(uname -r), $RUNS runs each, median wall time"
echo "binary: $BIN ($(stat -c %s "$BIN") bytes)"
for tb in "$CACHE/rootfs.tar.gz" "$CACHE/rootfs.tar.zst"; do
    tar_bytes=$("$BIN" unpack --progress none --no-sync "$tb" "$MA" 2>/dev/null | sed -n 's/.* \([0-9]*\) tar bytes.*/\1/p' || true)
    rm -rf "${MA:?}"/*
    echo
    echo "== $(basename "$tb"): $(stat -c %s "$tb") bytes compressed, ${tar_bytes:-?} bytes of tar"
    read -r _ ref _ refc < <(timed reference reference "$tb")
    read -r _ refcp _ refcpc < <(timed refcopy reference_copy "$tb")
    read -r _ full full_rss fullc < <(timed sysinstall ours "$tb")
    read -r _ one _ onec < <(timed tar1 tar_one "$tb" fresh)
    read -r _ two two_rss twoc < <(timed ours2 ours_two "$tb" fresh)
    rss_kib=$(( full_rss > two_rss ? full_rss : two_rss ))
    echo "  (wall time, then CPU time of the processes; load average $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '  %-44s %6.2f s  cpu %5.2f s\n' "reference (old tool, 2 slots in parallel)" "$ref" "$refc"
    printf '  %-44s %6.2f s  cpu %5.2f s\n' "reference + copy of the tarball to EXTRA" "$refcp" "$refcpc"
    printf '  %-44s %6.2f s  cpu %5.2f s  ratio %.2f (target <= 0.60), %.2f vs ref + copy\n' "sysinstall (mkfs, unpack both, e2fsck)" "$full" "$fullc" "$(echo "$full / $ref" | bc -l)" "$(echo "$full / $refcp" | bc -l)"
    printf '  %-44s %6.2f s  cpu %5.2f s\n' "GNU tar into one slot (+sync)" "$one" "$onec"
    printf '  %-44s %6.2f s  cpu %5.2f s  ratio %.2f (target <= 1.00)\n' "sysinstall unpack into two slots (+syncfs)" "$two" "$twoc" "$(echo "$two / $one" | bc -l)"
    printf '  %-44s %6.1f MiB (target < 64)\n' "peak RSS of sysinstall" "$(echo "$rss_kib / 1024" | bc -l)"
done
