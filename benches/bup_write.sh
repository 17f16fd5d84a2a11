#!/usr/bin/env bash
# Benchmark of `sysinstall bup write` on image files: a TX2 update from slot
# A with a payload of realistic size (~31 MB, like the R32.7 TX2 payloads),
# boot0/boot1 of 4 MiB and a user area with 64 MiB kernel partitions.
# Prints wall time and peak memory of: the first run (writes and verifies
# slot B), a second run (compares, writes nothing) and a dry run.
#
#   bash benches/bup_write.sh            # uses target/release, builds it
#   BENCH_DIR=/dev/shm/x bash benches/bup_write.sh   # images on tmpfs
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet
bin=$target/release/sysinstall
dir=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$dir"
trap '[ -z "${BENCH_DIR:-}" ] && rm -rf "$dir"' EXIT

python3 - "$dir" <<'EOF'
import os, struct, sys, uuid, zlib
d = sys.argv[1]
MIB = 1 << 20
spec = "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1"

def blob(tag, n):
    return (tag.encode() * (n // len(tag) + 1))[:n]

def bct(n):
    b = bytearray(b"\xb1" * n)
    b[0:4] = struct.pack("<I", n)
    b[1696:1700] = struct.pack("<I", 0x00070001)
    b[1700:1704] = struct.pack("<I", 14)
    b[1704:1708] = struct.pack("<I", 9)
    return bytes(b)

entries = [
    ("bpmp-fw", blob("bpmp", 534816), 0, ""), ("sce-fw", blob("sce", 126032), 0, ""),
    ("cpu-bootloader", blob("cboot", 312528), 0, ""), ("mb2", blob("mb2", 122784), 0, ""),
    ("spe-fw", blob("spe", 95984), 0, ""), ("adsp-fw", blob("adsp", 77616), 0, ""),
    ("secure-os", blob("tos", 407360), 0, ""), ("kernel", blob("kernel", 26 * MIB), 0, ""),
    ("mb1", blob("mb1", 99664), 2, ""), ("mts-bootpack", blob("mtsb", 2082144), 2, ""),
    ("mts-preboot", blob("mtsp", 63104), 2, ""), ("sc7", blob("sc7", 23632), 2, ""),
    ("bpmp-fw-dtb", blob("bdtb", 605120), 0, spec), ("bootloader-dtb", blob("cdtb", 500000), 0, spec),
    ("kernel-dtb", blob("kdtb", 500000), 0, spec), ("VER", blob("ver", 120), 0, spec),
    ("BCT", bct(3584), 0, spec), ("MB1_BCT", blob("mb1bct", 65536), 0, spec),
]
hs = 48
off = hs + 120 * len(entries)
tab = b""
for name, data, op, s in entries:
    tab += struct.pack("<40sIIII64s", name.encode(), off, len(data), 0x3275, op, s.encode())
    off += len(data)
total = off
with open(f"{d}/payload", "wb") as f:
    f.write(struct.pack("<16sIIIIII", b"NVIDIA__BLOB__V2", 0x01020621, total, hs, len(entries), 0, total))
    f.write(b"\0" * 8 + tab)
    for e in entries:
        f.write(e[1])

boot = [("BCT", 0, 32768), ("mb1", 32768, 262144), ("mb1_b", 294912, 262144),
        ("MB1_BCT", 557056, 65536), ("MB1_BCT_b", 622592, 65536), ("dram-ecc-fw", 688128, 55296),
        ("badpage-fw", 743424, 4608), ("badpage-fw_b", 748032, 4608), ("spe-fw", 752640, 131072),
        ("spe-fw_b", 883712, 131072), ("mb2", 1014784, 262144), ("mb2_b", 1276928, 262144),
        ("mts-preboot", 1539072, 262144), ("mts-preboot_b", 1801216, 262144),
        ("SMD", 2063360, 4096), ("SMD_b", 2067456, 4096), ("UBENV", 8224768, 32768),
        ("VER_b", 8257536, 32768), ("VER", 8323072, 32768)]
img = bytearray(8 * MIB)
basic = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7").bytes_le
arr = bytearray(128 * 128)
for i, (name, o, s) in enumerate(boot):
    arr[i * 128:(i + 1) * 128] = (basic + uuid.uuid4().bytes_le + struct.pack("<QQQ", o // 512, (o + s) // 512 - 1, 0)
                                  + name.encode("utf-16-le").ljust(72, b"\0"))
n = len(img) // 512
hdr = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, n - 1, 1, 0, n - 33,
                            uuid.uuid4().bytes_le, n - 33, 128, 128, zlib.crc32(arr)))
hdr[16:20] = struct.pack("<I", zlib.crc32(hdr))
img[(n - 33) * 512:(n - 1) * 512] = arr
img[(n - 1) * 512:(n - 1) * 512 + 92] = hdr
smd = bytearray(b"\0NBC" + bytes([3, 3, 2, 0, 15]) + b"_a" + bytes([7, 1, 14]) + b"_b" + bytes([7, 1]))
smd += struct.pack("<I", zlib.crc32(smd))
for at in (2063360, 2067456):
    img[at:at + 22] = smd
for at in (0, 3584, 16384):
    img[at:at + 3584] = bct(3584)[:3584].replace(b"\xb1", b"\xaa")
with open(f"{d}/boot0.img", "wb") as f:
    f.write(img[:4 * MIB])
with open(f"{d}/boot1.img", "wb") as f:
    f.write(img[4 * MIB:])
EOF

args=()
n=1
start=1
for p in kernel:64 kernel-dtb:1 bootloader-dtb:1 bpmp-fw-dtb:1 bpmp-fw:1 sce-fw:1 cpu-bootloader:4 \
         adsp-fw:1 secure-os:4 mts-bootpack:8 sc7:1; do
    name=${p%%:*}; mib=${p##*:}
    for s in "" _b; do
        args+=("-n$n:$((start * 2048)):$(((start + mib) * 2048 - 1))" "-c$n:$name$s")
        n=$((n + 1)); start=$((start + mib))
    done
done
truncate -s $(((start + 2) * 1048576)) "$dir/user.img"
sgdisk -o "${args[@]}" "$dir/user.img" >/dev/null

run() {
    local what=$1; shift
    local cmd=("$bin" bup write "$dir/payload" --boot-device "$dir/boot0.img" --boot-device "$dir/boot1.img"
               --user-device "$dir/user.img" --soc t186 --tnspec 3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1
               --slot b "$@")
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "$what: %e s wall, %M KiB peak RSS" "${cmd[@]}" 2>&1 >/dev/null | tail -1
    else
        local t0=$(date +%s.%N); "${cmd[@]}" >/dev/null; echo "$what: $(echo "$(date +%s.%N) - $t0" | bc) s wall"
    fi
}
echo "payload $(stat -c %s "$dir/payload") bytes, images in $dir"
run "first run (write + verify slot B)"
run "second run (compare, nothing written)"
run "dry run" --dry-run
