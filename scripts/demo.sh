#!/usr/bin/env bash
# The main job on a disposable disk: builds sysinstall, makes a Debian-based
# rootfs tarball and a bootloader update payload for the demo layout, installs
# them onto a 4 GiB sparse image attached to a loop device (with two 4 MiB
# images standing in for eMMC boot0/boot1), then checks the result from
# outside (sgdisk, e2fsck, the slot trees against the tarball, the boot
# partitions against the payload) and runs the same install again to show it
# becomes an update of the other slot.
#
# Usage: sudo bash scripts/demo.sh [WORKDIR]   (default /tmp/sysinstall-demo; kept)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/sysinstall-demo}
tnspec=3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1
[ "$(id -u)" = 0 ] || { echo "demo: run as root (loop devices, mkfs, mount)" >&2; exit 2; }

bash "$repo/tests/setup.sh"
echo "== building"
cargo build --release --locked --manifest-path "$repo/Cargo.toml"
bin=${CARGO_TARGET_DIR:-$repo/target}/release/sysinstall

mkdir -p "$work"
cd "$work"
layout=$repo/layouts/demo.xml
echo "== the layout"
"$bin" layout "$layout"
"$bin" layout "$layout" --format json > layout.json

echo "== fixtures: payload and rootfs"
python3 "$repo/tests/fixtures/mkbup.py" --layout "$layout" --tnspec "$tnspec" \
    --decoy-fab B00 -o bl_update_payload --manifest payload.json
[ -s image.tar.zst ] || bash "$repo/tests/fixtures/mkrootfs.sh" "$work/image.tar.zst" --bup bl_update_payload

rm -f disk.img boot0.img boot1.img
truncate -s 4G disk.img
truncate -s 4M boot0.img boot1.img
loop=$(losetup -f --show disk.img)
cleanup() { partx -d "$loop" 2>/dev/null || true; losetup -d "$loop" 2>/dev/null || true; }
trap cleanup EXIT

run_install() {
    SYSINSTALL_RUNDIR=$work/run "$bin" --yes --layout "$layout" --device "$loop" \
        --boot-device boot0.img --boot-device boot1.img --tnspec "$tnspec" image.tar.zst
}

echo "== install onto $loop"
time run_install
echo "== the disk now"
"$bin" plan --layout "$layout" --device "$loop"
sync
echo "== checks from outside"
check=$repo/tests/qemu/check.py
python3 "$check" gpt disk.img layout.json | tail -3
python3 "$check" fs disk.img layout.json APP APP_b DATA LOGS EXTRA
python3 "$check" tree disk.img layout.json APP image.tar.zst
python3 "$check" tree disk.img layout.json APP_b image.tar.zst
python3 "$check" boot --smd initialize layout.json boot0.img boot1.img disk.img payload.json | tail -4

echo "== the same command again: the layout is in place, slot A is active, so slot B is updated"
time run_install
echo "demo: done; files in $work"
