#!/usr/bin/env bash
# Benchmark: the same rootfs installed into both slots as an ext4 image
# (--image APP=) and as a tarball, beside the floor of writing the image's
# bytes into both slots with dd and direct I/O. Prints figures; asserts
# nothing.
#
#   floor       dd if=IMAGE of=APP bs=4M oflag=direct, then the same for APP_b
#               (the partitions made beforehand, untimed)
#   image step  sysinstall's "image into APP, APP_b" step (from its JSON
#               events: written, flushed, read back, grown), one stream
#   image       the whole `sysinstall --image APP=IMAGE --no-bootloader`
#               (preflight read of the image, GPT, mkfs DATA LOGS EXTRA)
#   tarball     the whole `sysinstall TARBALL --no-bootloader`, same content
#
# Target (issue 15): image step <= 1.3 x floor. The image step also reads
# both slots back, which dd does not: that is in the figure.
# Usage: benches/image.sh [RUNS]   (root; default 3, median reported)
# Tarball: benches/make-rootfs.sh (debootstrap, cached in $SYSINSTALL_BENCH_CACHE).
set -euo pipefail
RUNS=${1:-3}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup image.sh debootstrap partx mke2fs resize2fs bc zstd python3
LAYOUT=layouts/demo.xml
TARBALL=$CACHE/rootfs.tar.zst

work=$(mktemp -d /var/tmp/sysinstall-bench-image.XXXXXX)
loop=""
cleanup() {
    [ -n "$loop" ] && { partx -d "$loop" 2>/dev/null || true; losetup -d "$loop" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT
"$BIN" layout "$LAYOUT" --format csv > "$work/partition_table"
num() { awk -F, -v n="$1" '$2 == n { print $1 }' "$work/partition_table"; }

# The image: the tarball's tree in an ext4 filesystem a third larger than
# its content (what a Yocto IMAGE_OVERHEAD_FACTOR of 1.3 gives).
mkdir -p "$work/tree"
tar --xattrs --xattrs-include='*' --acls --numeric-owner -xpf "$TARBALL" -C "$work/tree"
kib=$(du -sk "$work/tree" | cut -f1)
IMAGE=$work/rootfs.ext4
mke2fs -q -F -t ext4 -L APP -i 4096 -d "$work/tree" "$IMAGE" "$((kib * 13 / 10 + 65536))K"
rm -rf "$work/tree"



floor() {
    SYSINSTALL_RUNDIR=$work/run "$BIN" partition --yes --layout "$LAYOUT" --device "$loop" >/dev/null 2>&1
    local a="${loop}p$(num APP)" b="${loop}p$(num APP_b)"
    sync; cat "$IMAGE" >/dev/null
    local t0; t0=$(now)
    dd if="$IMAGE" of="$a" bs=4M oflag=direct status=none
    dd if="$IMAGE" of="$b" bs=4M oflag=direct status=none
    echo "$(now) - $t0" | bc -l
}

install() { # source-args... ; prints "total step write readback" seconds (0 0 for a tarball)
    sync; cat "$IMAGE" "$TARBALL" >/dev/null
    local t0; t0=$(now)
    SYSINSTALL_RUNDIR=$work/run "$BIN" -vv --yes --progress none --events json --no-bootloader \
        --layout "$LAYOUT" --device "$loop" "$@" >"$work/events" 2>"$work/log" ||
        { cat "$work/log" >&2; return 1; }
    local total; total=$(echo "$(now) - $t0" | bc -l)
    local step
    step=$(python3 - "$work/events" "$work/log" <<'EOF'
import json, re, sys
start = step = None
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("kind") == "step_start" and e.get("phase") == "unpack" and start is None:
        start = e["time"]
    elif e.get("kind") == "step_end" and start is not None and e.get("phase") == "unpack":
        step = e["time"] - start
        break
# The image step's own split (-vv): "written and flushed in 638.01ms, read back in 439.38ms"
def secs(v, u):
    return float(v) * {"s": 1, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}[u]
m = re.search(r"written and flushed in ([\d.]+)(\w+), read back in ([\d.]+)(\w+)", open(sys.argv[2]).read())
w, r = (secs(m[1], m[2]), secs(m[3], m[4])) if m else (0, 0)
print(step, w, r)
EOF
)
    echo "$total $step"
}

echo "sysinstall image benchmark: $(nproc) cores, $(uname -r), $RUNS runs each, median wall time"
echo "binary: $BIN ($(stat -c %s "$BIN") bytes); layout: $LAYOUT on a 4 GiB direct-I/O loop device"
echo "image: $(stat -c %s "$IMAGE") bytes ext4 ($((kib / 1024)) MiB of files); tarball: $(stat -c %s "$TARBALL") bytes"
fl=() it=() is=() iw=() ir=() tt=() ts=()
for _ in $(seq "$RUNS"); do
    fresh_disk; fl+=("$(floor)")
    fresh_disk; read -r a b c d < <(install --image "APP=$IMAGE"); it+=("$a"); is+=("$b"); iw+=("$c"); ir+=("$d")
    fresh_disk; read -r a b _ _ < <(install "$TARBALL"); tt+=("$a"); ts+=("$b")
done
f=$(printf '%s\n' "${fl[@]}" | median)
s=$(printf '%s\n' "${is[@]}" | median)
w=$(printf '%s\n' "${iw[@]}" | median)
printf '  %-44s %6.2f s\n' "floor: dd oflag=direct into APP and APP_b" "$f"
printf '  %-44s %6.2f s  ratio %.2f (target <= 1.30)\n' "image step (write, flush, read back, grow)" "$s" "$(echo "$s / $f" | bc -l)"
printf '  %-44s %6.2f s  ratio %.2f\n' "  of which write and flush" "$w" "$(echo "$w / $f" | bc -l)"
printf '  %-44s %6.2f s\n' "  of which read back" "$(printf '%s\n' "${ir[@]}" | median)"
printf '  %-44s %6.2f s\n' "whole install, --image APP=" "$(printf '%s\n' "${it[@]}" | median)"
printf '  %-44s %6.2f s\n' "unpack step, tarball" "$(printf '%s\n' "${ts[@]}" | median)"
printf '  %-44s %6.2f s\n' "whole install, tarball" "$(printf '%s\n' "${tt[@]}" | median)"
echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg))"
