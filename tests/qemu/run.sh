#!/usr/bin/env bash
# The real-kernel end-to-end tier: Debian's arm64 kernel under
# qemu-system-aarch64 (TCG) boots the upgrader initramfs; the target is an
# emulated SD card that appears as /dev/mmcblk0 (sdhci-pci + sd-card); a
# virtio disk carries the installer payload (built without root by
# mke2fs -d); two 4 MiB virtio disks stand in for the eMMC boot partitions
# (qemu cannot emulate those; the test /init makes /dev/mmcblk0boot0/1 point
# at them); one more virtio disk brings the guest's results back.
#
# Scenarios (default: all, in this order):
#   checks     no guest: check.py passes on a reference install made on the
#              host with the old tools and catches four planted faults
#   smoke      boot, /dev/mmcblk0 appears, the static binary runs in the guest
#              (--version, `layout` of the payload layout, same output as on
#              the host), e2fsprogs runs, poweroff, the host reads the marker
#   oe-smoke   the same with the busybox applets of OE-Core's default
#              configuration only (initramfs/busybox-oe.applets: no cttyhack,
#              findfs, poweroff), as the Yocto layer's upgrader has them; the
#              payload named by LABEL=, poweroff without the applet
#   install    sysinstall.auto=1 sysinstall.events=console on a blank disk,
#              poweroff; the console's last intact event frame is a summary
#              with exit 0, as /run/sysinstall/summary; from outside: GPT
#              equal to the layout, every filesystem e2fsck -fn clean with its
#              label, both slot trees equal the tarball, boot partitions equal
#              the payload, slot metadata as REF writes it
#   update     a second boot with a new rootfs and BUP: only the inactive slot
#              (APP_b, *_b, BCT, the other mb1, SMD) changed, and to the new content
#              (install and update boot the OE-applet initramfs of oe-smoke,
#              smoke and interrupt Debian's busybox-static one)
#   interrupt  a blank disk; the guest is killed (SIGKILL to qemu: a power cut)
#              in the middle of the unpack; the next boot's run completes and
#              passes every check of `install`
#   clock      the guest's clock starts in 1970: with no network /init sets it
#              to sysinstall's build date; with user-mode networking and a
#              rootfs URL on a host http server, to that server's Date:
#   luks       tests/fixtures/layouts/demo-luks.xml (crypt-APP, crypt-APP_b,
#              crypt-DATA) on a blank disk, by guest/luks.sh: without a key
#              refused (key_missing) with the disk unchanged; with
#              --luks-key-file installed, each LUKS2 container opens with that
#              key (not another), its filesystem clean and labelled, the slots
#              hold the rootfs; an update with another key refused
#              (key_rejected), nothing written; from outside: the GPT, LOGS
#              and EXTRA, the boot partitions, a LUKS2 header on each crypt-
# Gate and knobs (environment):
#   SYSINSTALL_TEST_QEMU=1     run at all (otherwise say so and exit 0); when
#                              set, anything missing (qemu, root, a tool, the
#                              kernel) fails the tier instead of skipping it
#   SYSINSTALL_QEMU_LAYOUT     layout file (default layouts/demo.xml, else
#                              tests/fixtures/layouts/tx2-mini.xml)
#   SYSINSTALL_QEMU_TNSPEC     board spec given to the guest (--tnspec)
#   SYSINSTALL_QEMU_TIMEOUT    seconds per boot before qemu is killed (default 300)
#   SYSINSTALL_QEMU_DEADLINE   seconds for the whole tier (default 900): later
#                              boots get what is left, none starts past it
#   SYSINSTALL_QEMU_KEEP=1     keep the work directory (images, console logs)
#   SYSINSTALL_CACHE           kernel and .deb cache (default ~/.cache/sysinstall)
# Needs root (loop mounts for the tree checks, mknod for the rootfs fixture).
#
# Usage: SYSINSTALL_TEST_QEMU=1 tests/qemu/run.sh [checks|smoke|oe-smoke|install|update|interrupt|clock|luks]...
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/qemu
# shellcheck source=lib.sh
. "$here/lib.sh"

skip() { echo "SKIP qemu tier: $*"; exit 0; }
die() { echo "FAIL qemu tier: $*" >&2; exit 1; }
[ "${SYSINSTALL_TEST_QEMU:-}" = 1 ] ||
    skip "off; set SYSINSTALL_TEST_QEMU=1 to boot Debian's arm64 kernel under qemu-system-aarch64 (about 5 minutes)"
command -v qemu-system-aarch64 >/dev/null ||
    die "qemu-system-aarch64 is not installed (tests/setup.sh installs qemu-system-arm)"
[ "$(id -u)" = 0 ] || die "needs root (loop mounts for the checks, mknod for the rootfs fixture)"
for t in sgdisk e2fsck dumpe2fs mke2fs debugfs getfacl setfacl setcap setfattr zstd readelf python3 losetup bmaptool; do
    command -v "$t" >/dev/null || die "needs $t (tests/setup.sh installs it)"
done

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(checks smoke oe-smoke install update interrupt clock diskimage luks)
for s in "${scenarios[@]}"; do   # before minutes of preparation
    case "$s" in
        checks|smoke|oe-smoke|install|update|interrupt|clock|diskimage|luks) ;;
        *) echo "qemu: unknown scenario $s" >&2; exit 2 ;;
    esac
done
timeout_s=${SYSINSTALL_QEMU_TIMEOUT:-300}
deadline_s=${SYSINSTALL_QEMU_DEADLINE:-900}   # the whole tier, preparation included
tnspec=${SYSINSTALL_QEMU_TNSPEC:-3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1}
layout=${SYSINSTALL_QEMU_LAYOUT:-}
if [ -z "$layout" ]; then
    layout=$repo/layouts/demo.xml
    [ -f "$layout" ] || layout=$repo/tests/fixtures/layouts/tx2-mini.xml
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
host_bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/sysinstall
work=$(mktemp -d /tmp/sysinstall-qemu.XXXXXX)
if [ "${SYSINSTALL_QEMU_KEEP:-}" = 1 ]; then
    echo "qemu: work directory $work (kept)"
else
    trap 'rm -rf "$work"' EXIT
fi

# --- preparation ------------------------------------------------------------
t0=$(now)
echo "== qemu: building the static binaries"
"$repo/scripts/build-static.sh" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
grep -E '^(aarch64|x86_64)-' "$work/build.log"
deb_ensure_arch arm64 || die "cannot add the arm64 architecture to apt"
echo "== qemu: kernel"
kroot=$(qemu_kernel arm64) || die "cannot fetch Debian's arm64 kernel (no registry and nothing cached)"
kver=$(ls -1 "$kroot/lib/modules")
kernel=$kroot/boot/vmlinuz-$kver
echo "   $kernel"
echo "== qemu: initramfs"
# Without cryptsetup (build.sh's default): this one carries busybox-static
# and every test module, and with cryptsetup's 2.9 MiB it would be over the
# budget; its scenarios (smoke, interrupt, clock, diskimage) have no crypt-
# partitions.
"$repo/initramfs/build.sh" --kernel-root "$kroot" --overlay "$here/overlay" \
    --output "$work/initrd.cpio.gz" | tail -n 4
echo "== qemu: initramfs with OE-Core's busybox applets only"
"$repo/initramfs/build.sh" --kernel-root "$kroot" --overlay "$here/overlay" \
    --busybox-applets "$repo/initramfs/busybox-oe.applets" --cryptsetup \
    --output "$work/initrd-oe.cpio.gz" | tail -n 4
initrd=$work/initrd.cpio.gz   # the scenarios choose
echo "== qemu: layout $layout"
disk_bytes=$((4 * 1024 * 1024 * 1024))   # power of two: qemu's sd-card insists
"$host_bin" layout "$layout" --format json --disk-sectors $((disk_bytes / 512)) \
    >"$work/layout.json" 2>"$work/layout.err" || true
timings+=("prepare $(since "$t0")")

# --- qemu ---------------------------------------------------------------------
# boot NAME CMDLINE [KILL_REGEX KILL_DELAY]: one guest run over the current
# images (lib.sh's qemu_run: console in $work/NAME.console, results unpacked
# into $work/NAME.results, bounded by the timeout and the deadline).
boot() {
    local name=$1 cmdline=$2
    qemu_run "$name" "${3:-}" "${4:-0}" -M virt -cpu cortex-a57 -smp 2 -m 1024 \
        -nographic -no-reboot -nic none "${qemu_extra[@]}" \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyAMA0 panic=-1 quiet sysinstall.wait=10 $cmdline" \
        -drive "file=$work/sd.img,format=raw,if=none,id=mmc0" -device sdhci-pci \
        -device sd-card,drive=mmc0 \
        -drive "file=$work/payload.img,format=raw,if=none,id=vd0,readonly=on" \
        -device virtio-blk-pci,drive=vd0,serial=payload \
        -drive "file=$work/boot0.img,format=raw,if=none,id=vd1" \
        -device virtio-blk-pci,drive=vd1,serial=boot0 \
        -drive "file=$work/boot1.img,format=raw,if=none,id=vd2" \
        -device virtio-blk-pci,drive=vd2,serial=boot1 \
        -drive "file=$work/results.img,format=raw,if=none,id=vd3" \
        -device virtio-blk-pci,drive=vd3,serial=results
}

qemu_extra=()   # a scenario may give its boots more options (a NIC, the RTC)

fresh_disks() {   # a blank target and blank boot partitions
    rm -f "$work/sd.img" "$work/boot0.img" "$work/boot1.img"
    truncate -s "$disk_bytes" "$work/sd.img"
    truncate -s 4M "$work/boot0.img" "$work/boot1.img"
}

payload() {   # ROOTFS BUP ARGS...: the installer payload disk
    local dir=$work/payload
    rm -rf "$dir" "$work/payload.img"
    mkdir -p "$dir/installer"
    cp "$layout" "$dir/installer/layout.xml"
    [ -n "$1" ] && cp "$1" "$dir/installer/image.tar.zst"
    [ -n "$2" ] && cp "$2" "$dir/installer/bl_update_payload"
    shift 2
    printf '%s\n' "# options the qemu tier gives sysinstall" "--tnspec $tnspec" "$@" \
        >"$dir/installer/sysinstall.args"
    # The emulated SD card writes at a few MB/s under TCG: mke2fs must not
    # zero inode tables and journals (a board keeps mke2fs's defaults). This
    # also exercises the site configuration file the initramfs passes on.
    printf '%s\n' "# site defaults for the qemu tier" \
        "mkfs-options = -E nodiscard,lazy_itable_init=1,lazy_journal_init=1" \
        >"$dir/installer/sysinstall.conf"
    payload_image
}
payload_image() {   # the payload disk from $work/payload (again, after a scenario added files)
    rm -f "$work/payload.img"
    mke2fs -q -t ext4 -L INSTALLER -d "$work/payload" "$work/payload.img" 256M
}

# Everything the issue asks of a finished initial install, checked from outside.
verify_install() {   # NAME ROOTFS MANIFEST
    local name=$1 rootfs=$2 manifest=$3 r=$work/$1.results
    check "$name: PASS line on the console" grep -q '^PASS: successful installation' "$work/$name.console"
    check "$name: sysinstall exited 0" grep -qx 0 "$r/install.rc"
    host_check gpt "$work/sd.img" "$work/layout.json"
    host_check fs "$work/sd.img" "$work/layout.json" APP APP_b DATA LOGS EXTRA UDA
    host_check tree "$work/sd.img" "$work/layout.json" APP "$rootfs"
    host_check tree "$work/sd.img" "$work/layout.json" APP_b "$rootfs"
    host_check boot "$work/layout.json" "$work/boot0.img" "$work/boot1.img" "$work/sd.img" \
        "$manifest" --slots a,b --smd initialize
}

fixtures_done=0
fixtures() {   # rootfs and BUP, v1 and v2
    ((fixtures_done)) && return 0
    local t v
    t=$(now)
    for v in v1 v2; do
        python3 "$repo/tests/fixtures/mkbup.py" --layout "$layout" --tnspec "$tnspec" \
            --decoy-fab B00 --seed "$v" -o "$work/bup-$v" --manifest "$work/bup-$v.json"
        "$repo/tests/fixtures/mkrootfs.sh" "$work/rootfs-$v.tar.zst" --bup "$work/bup-$v" --tag "$v"
    done
    fixtures_done=1
    timings+=("fixtures $(since "$t")")
}

# --- scenarios ----------------------------------------------------------------
# checks: no guest. A reference install made on the host with the old tools
# (reference_install.py: sgdisk, mkfs.ext4, GNU tar, the payload written as
# tegra-bootloader-update --initialize does) must pass every check.py check,
# and each of four planted faults must be caught: the checks can pass and fail.
checker() {   # EXPECT(pass|fail) DESCRIPTION check.py-ARGS...
    local expect=$1 what=$2 out rc=0
    shift 2
    out=$(python3 "$here/check.py" "$@" 2>&1) || rc=$?
    if { [ "$expect" = pass ] && ((rc == 0)); } || { [ "$expect" = fail ] && ((rc == 1)); }; then
        ok "checks: $what"
    else
        fail "checks: $what (check.py status $rc)"
        echo "$out" | grep -v '^ok - ' | head -n 20
    fi
}

layout_json_ok() {
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["partitions"]' \
        "$work/layout.json" 2>/dev/null
}

scenario_checks() {
    fixtures
    local img=$work/ref.img b0=$work/ref-boot0.img b1=$work/ref-boot1.img lj=$work/ref-layout.json
    rm -f "$img" "$b0" "$b1"
    truncate -s "$disk_bytes" "$img"
    truncate -s 4M "$b0" "$b1"
    if layout_json_ok; then
        cp "$work/layout.json" "$lj"   # the layout engine's own placement
    else
        echo "   no layout JSON from sysinstall; the reference install uses a simple placement"
        python3 "$here/reference_install.py" layout "$layout" $((disk_bytes / 512)) "$lj"
    fi
    python3 "$here/reference_install.py" install "$lj" "$img" "$b0" "$b1" \
        "$work/rootfs-v1.tar.zst" "$work/bup-v1.json" "$work/bup-v1"
    checker pass "reference install: GPT equals the layout" gpt "$img" "$lj"
    checker pass "reference install: filesystems clean and labelled" fs "$img" "$lj" APP APP_b DATA LOGS EXTRA
    checker pass "reference install: APP equals the tarball" tree "$img" "$lj" APP "$work/rootfs-v1.tar.zst"
    checker pass "reference install: boot partitions equal the payload" \
        boot "$lj" "$b0" "$b1" "$img" "$work/bup-v1.json" --slots a,b --smd initialize
    python3 "$here/check.py" hashes "$img" "$lj" "$b0" "$b1" "$work/ref.hashes.json" >/dev/null

    # Planted faults, one at a time.
    sgdisk -c 2:WRONG "$img" >/dev/null
    checker fail "a renamed partition is caught" gpt "$img" "$lj"
    sgdisk -c 2:APP_b "$img" >/dev/null
    local app_b
    app_b=$(python3 -c 'import json,sys; print(next(p["start_lba"] for p in json.load(open(sys.argv[1]))["partitions"] if p["name"]=="APP_b") * 512)' "$lj")
    tune2fs -L WRONG "$img?offset=$app_b" >/dev/null 2>&1
    checker fail "a wrong filesystem label is caught" fs "$img" "$lj" APP_b
    tune2fs -L APP_b "$img?offset=$app_b" >/dev/null 2>&1
    local dev mnt
    dev=$(losetup -f --show -o "$app_b" "$img")
    mnt=$(mktemp -d)
    mount "$dev" "$mnt" && chmod 0600 "$mnt/etc/hostname" && umount "$mnt"
    losetup -d "$dev" && rmdir "$mnt"
    checker fail "a changed file mode in a slot is caught" tree "$img" "$lj" APP_b "$work/rootfs-v1.tar.zst"
    python3 "$here/check.py" hashes "$img" "$lj" "$b0" "$b1" "$work/ref2.hashes.json" >/dev/null
    checker pass "an update-like change of APP_b only is accepted" changed \
        "$work/ref.hashes.json" "$work/ref2.hashes.json" --allow 'APP_b' --must APP_b --same APP
    checker fail "a change outside the allowed set is caught" changed \
        "$work/ref.hashes.json" "$work/ref2.hashes.json" --allow 'DATA' --must APP_b
    printf '\xff' | dd of="$b0" bs=1 seek=$((1014784 + 100)) conv=notrunc status=none   # inside mb2
    checker fail "a corrupted boot partition is caught" \
        boot "$lj" "$b0" "$b1" "$img" "$work/bup-v1.json" --slots a,b
    rm -f "$img" "$b0" "$b1"
}

scenario_smoke() {
    local name=${1:-smoke} cmdline=${2:-}
    fresh_disks
    payload "" "" ""
    boot "$name" "sysinstall.test=smoke $cmdline" || return 0
    local r=$work/$name.results
    check "$name: guest marker on the results disk" grep -qx 'marker=sysinstall-smoke' "$r/facts"
    check "$name: /dev/mmcblk0 is the 4 GiB SD card" \
        grep -qx "mmcblk0_sectors=$((disk_bytes / 512))" "$r/facts"
    check "$name: /dev/mmcblk0boot0 and boot1 stand-ins (8192 sectors each)" \
        test "$(grep -c '^mmcblk0boot[01]_sectors=8192$' "$r/facts")" = 2
    check "$name: payload found on the virtio disk" grep -q '^payload=/installer on /dev/vd' "$r/facts"
    check "$name: guest kernel is aarch64" grep -q '^uname=aarch64 ' "$r/facts"
    check "$name: sysinstall --version in the guest equals the host's" \
        test "$(cat "$r/version.out" 2>/dev/null)" = "$("$host_bin" --version)"
    local host_rc=0
    "$host_bin" layout "$work/payload/installer/layout.xml" --format json \
        >"$work/$name.host-layout.json" 2>"$work/$name.host-layout.err" || host_rc=$?
    check "$name: sysinstall layout exits the same in the guest as on the host ($host_rc)" \
        grep -qx "$host_rc" "$r/layout.rc"
    check "$name: sysinstall layout prints the same JSON in the guest (aarch64) and on the host" \
        cmp -s "$r/layout.json" "$work/$name.host-layout.json"
    if [ "$host_rc" = 0 ]; then
        check "$name: the layout JSON parses and has APP" \
            python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(p["name"]=="APP" for p in d["partitions"])' "$r/layout.json"
    else
        echo "   note: layout is not implemented yet here: $(head -c 200 "$r/layout.err")"
    fi
    check "$name: mke2fs is e2fsprogs 1.47, not busybox's" grep -q '^mke2fs 1\.4' "$r/mke2fs.version"
    local tool
    for tool in mke2fs e2fsck tune2fs; do   # format, check, read a device in the guest
        check "$name: e2fsprogs $tool runs on a device in the guest" grep -qx 0 "$r/$tool.rc"
    done
    check "$name: tune2fs reads the label mke2fs wrote" \
        grep -Eq '^Filesystem volume name: +SMOKE$' "$r/tune2fs.out"
    check "$name: run-install passes the payload layout" \
        grep -q -- '--layout /installer/layout.xml' "$r/run-install"
    check "$name: the banner tells what to type" grep -q 'run-install --dry-run' "$r/banner"
}

# oe-smoke: smoke with OE-Core's busybox applets, the payload by its label
# (no findfs: /init asks blkid), and the absence of what OE lacks checked.
scenario_oe_smoke() {
    initrd=$work/initrd-oe.cpio.gz
    scenario_smoke oe-smoke "sysinstall.payload=LABEL=INSTALLER"
    local r=$work/oe-smoke.results
    check "oe-smoke: no cttyhack, findfs, poweroff or blockdev applet in the guest" \
        grep -qx 'missing=cttyhack findfs poweroff blockdev' "$r/facts"
    check "oe-smoke: the payload was found by LABEL=INSTALLER" \
        grep -q '^payload=/installer on /dev/vd' "$r/facts"
    check "oe-smoke: the guest powered itself off (sysrq, no poweroff applet)" \
        grep -q 'reboot: Power down' "$work/oe-smoke.console"
    initrd=$work/initrd.cpio.gz
}

scenario_install() {
    initrd=$work/initrd-oe.cpio.gz
    fixtures
    fresh_disks
    payload "$work/rootfs-v1.tar.zst" "$work/bup-v1" "--progress plain"
    # Framed events on the console, as a lab reads them (README: Driving the
    # console from a program).
    boot install "sysinstall.auto=1 sysinstall.after=poweroff sysinstall.events=console" || return 0
    verify_install install "$work/rootfs-v1.tar.zst" "$work/bup-v1.json"
    host_check frames "$work/install.console" --exit 0 --copy "$work/install.results/summary"
    python3 "$here/check.py" hashes "$work/sd.img" "$work/layout.json" "$work/boot0.img" \
        "$work/boot1.img" "$work/install.hashes.json" >/dev/null || fail "install: hashing the partitions"
    installed=1
}

scenario_update() {
    if [ "${installed:-0}" != 1 ]; then
        fail "update: needs the install scenario's disk (run: install update)"
        return
    fi
    initrd=$work/initrd-oe.cpio.gz
    fixtures
    payload "$work/rootfs-v2.tar.zst" "$work/bup-v2" "--progress plain"
    # Running from slot A, as cboot says on the command line.
    boot update "sysinstall.auto=1 sysinstall.after=poweroff boot.slot_suffix=" || return 0
    local r=$work/update.results
    check "update: PASS line on the console" grep -q '^PASS: successful installation' "$work/update.console"
    check "update: sysinstall exited 0" grep -qx 0 "$r/install.rc"
    python3 "$here/check.py" hashes "$work/sd.img" "$work/layout.json" "$work/boot0.img" \
        "$work/boot1.img" "$work/update.hashes.json" >/dev/null || fail "update: hashing the partitions"
    host_check changed "$work/install.hashes.json" "$work/update.hashes.json" \
        --allow '.*_b|BCT|mb1|SMD' --must APP_b --same APP DATA LOGS EXTRA UDA
    host_check fs "$work/sd.img" "$work/layout.json" APP APP_b DATA LOGS EXTRA UDA
    host_check tree "$work/sd.img" "$work/layout.json" APP "$work/rootfs-v1.tar.zst"
    host_check tree "$work/sd.img" "$work/layout.json" APP_b "$work/rootfs-v2.tar.zst"
    host_check boot "$work/layout.json" "$work/boot0.img" "$work/boot1.img" "$work/sd.img" \
        "$work/bup-v2.json" --slots b --old "$work/bup-v1.json" --smd update-unbooted
}

scenario_interrupt() {
    initrd=$work/initrd.cpio.gz
    fixtures
    fresh_disks
    # JSON events on stderr (straight to the console; stdout keeps PASS/FAIL).
    payload "$work/rootfs-v1.tar.zst" "$work/bup-v1" "--events json --events-fd 2"
    # Cut the power once the unpack reports progress.
    if ! boot interrupt-cut "sysinstall.auto=1 sysinstall.after=poweroff" \
            '"phase":"unpack"[^}]*"kind":"progress"' 1; then
        fail "interrupt: no power cut happened (no unpack progress event before the guest stopped)"
        return
    fi
    check "interrupt: the cut came before the end" bash -c "! grep -q '^PASS:' '$work/interrupt-cut.console'"
    boot interrupt-rerun "sysinstall.auto=1 sysinstall.after=poweroff" || return 0
    verify_install interrupt-rerun "$work/rootfs-v1.tar.zst" "$work/bup-v1.json"
}

# diskimage: a whole-disk image and the bmap beside it (--disk-image) onto
# the SD card under the real kernel: the partitions are found by the kernel's
# own GPT parser (BLKRRPART, which this host's kernel cannot do), the backup
# GPT ends at the card's end, and APP holds the image's filesystem.
scenario_diskimage() {
    initrd=$work/initrd.cpio.gz
    fresh_disks
    local dir=$work/payload d=$work/diskimage r=$work/diskimage.results
    rm -rf "$dir" "$work/payload.img" "$d"
    mkdir -p "$dir/installer" "$d/tree/etc"
    echo "from a disk image" >"$d/tree/etc/hello"
    truncate -s 64M "$d/disk.img"
    # mke2fs first: it clears the start of the file it is given.
    mke2fs -q -F -t ext4 -L APP -E offset=1048576 -d "$d/tree" "$d/disk.img" 20M
    sgdisk -n 1:2048:+20M -c 1:APP -n 2:0:+10M -c 2:DATA "$d/disk.img" >/dev/null
    bmaptool -q create -o "$dir/installer/disk.img.bmap" "$d/disk.img"
    zstd -q "$d/disk.img" -o "$dir/installer/disk.img.zst"
    # No layout and no payload in /installer: /init then adds neither.
    echo "--disk-image /installer/disk.img.zst" >"$dir/installer/sysinstall.args"
    mke2fs -q -t ext4 -L INSTALLER -d "$dir" "$work/payload.img" 256M
    boot diskimage "sysinstall.auto=1 sysinstall.after=poweroff" || return 0
    check "diskimage: PASS line on the console" \
        grep -q '^PASS: successful installation of disk.img.zst' "$work/diskimage.console"
    check "diskimage: sysinstall exited 0" grep -qx 0 "$r/install.rc"
    check "diskimage: the bmap beside the image was used" \
        grep -q 'disk.img.bmap (format 2.0)' "$work/diskimage.console"
    check "diskimage: the kernel parsed the new table (BLKRRPART)" \
        grep -q 'mmcblk0 has 2 partitions: APP, DATA' "$work/diskimage.console"
    check "diskimage: sgdisk -v finds no problem (the backup GPT at the card's end)" \
        bash -c "sgdisk -v '$work/sd.img' | grep -q 'No problems found'"
    local loop
    if loop=$(losetup -f --show -r -o 1048576 --sizelimit $((20 << 20)) "$work/sd.img"); then
        check "diskimage: APP's filesystem is clean" bash -c "e2fsck -fn '$loop' >/dev/null 2>&1"
        check "diskimage: APP holds the image's files" \
            bash -c "debugfs -R 'cat /etc/hello' '$loop' 2>/dev/null | grep -qx 'from a disk image'"
        losetup -d "$loop"
    else
        fail "diskimage: cannot attach APP of the card"
    fi
}

# clock: the guest starts in 1970 (-rtc base=): without a network /init sets
# the clock to the day sysinstall was built; with user-mode networking and a
# rootfs URL on the host's http server, to the Date: that server sends.
scenario_clock() {
    fresh_disks
    payload "" "" ""
    local floor port server r
    floor=$("$host_bin" --version | sed -n 's/.*(built \([0-9-]*\)).*/\1/p')
    check "clock: sysinstall --version gives the build date ($floor)" \
        test "${#floor}" = 10
    qemu_extra=(-rtc base=1970-01-02T00:00:00)
    if boot clock-floor "sysinstall.test=clock"; then
        r=$work/clock-floor.results
        check "clock-floor: the console says the clock was set to the build date" \
            grep -q "clock: was 1970-.*set to $floor" "$work/clock-floor.console"
        check "clock-floor: the guest's clock is at the build date" \
            grep -qx "${floor//-/}" "$r/today"
    fi
    mkdir -p "$work/www"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >"$work/www.log" 2>&1 &
    server=$!
    # User-mode networking: the guest reaches the host's 127.0.0.1 as 10.0.2.2.
    # (romfile=: no PXE option ROM, which Debian's qemu keeps in another package.)
    qemu_extra+=(-netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile=)
    if boot clock-http "sysinstall.test=clock sysinstall.url=http://10.0.2.2:$port/rootfs.tar.zst"; then
        r=$work/clock-http.results
        check "clock-http: the console says the clock came from the server's Date:" \
            grep -q "clock: was 1970-.*set from the Date: header" "$work/clock-http.console"
        check "clock-http: the guest's date is the host's" \
            grep -qx "$(date -u +%Y%m%d)" "$r/today"
    fi
    kill "$server" 2>/dev/null || true
    qemu_extra=()
}

# luks: guest/luks.sh runs the installs (see the header); checked here from
# its results and from outside. The blank disk must stay blank through the
# refusals: the guest hashes its first 64 MiB (GPT, journal) around them.
scenario_luks() {
    initrd=$work/initrd-oe.cpio.gz
    fixtures
    fresh_disks
    local saved=$layout lj=$work/luks-layout.json r=$work/luks.results name
    layout=$repo/tests/fixtures/layouts/demo-luks.xml
    payload "$work/rootfs-v1.tar.zst" "$work/bup-v1" "--progress plain"
    layout=$saved
    "$host_bin" layout "$repo/tests/fixtures/layouts/demo-luks.xml" --format json \
        --disk-sectors $((disk_bytes / 512)) >"$lj"
    head -c 64 /dev/urandom >"$work/payload/installer/luks.key"
    head -c 64 /dev/urandom >"$work/payload/installer/wrong.key"
    cp "$here/guest/lib.sh" "$work/payload/installer/guest-lib.sh"
    cp "$here/guest/luks.sh" "$work/payload/installer/guest-test.sh"
    payload_image
    boot luks "sysinstall.test=script boot.slot_suffix=" || return 0
    fact() { sed -n "s/^$1=//p" "$r/facts" 2>/dev/null | head -n 1; }
    check "luks: the guest script ran to its end" test -f "$r/guest.rc"
    check "luks: no key: exit 3" grep -qx 3 "$r/nokey.rc"
    check "luks: no key: failure code key_missing" grep -q '"code":"key_missing"' "$r/nokey.out"
    check "luks: no key: the disk is unchanged (first 64 MiB)" \
        test -n "$(fact head_before)" -a "$(fact head_before)" = "$(fact head_nokey)"
    check "luks: with --luks-key-file: exit 0" grep -qx 0 "$r/install.rc"
    check "luks: with --luks-key-file: PASS" grep -q '^PASS: successful installation' "$r/install.out"
    check "luks: the plan names the encryption" grep -q 'APP (LUKS2 on crypt-APP)' "$r/install.err"
    for name in crypt-APP crypt-APP_b crypt-DATA; do
        check "luks: $name is a LUKS2 container" test "$(fact "$name.luks2")" = yes
        check "luks: $name: aes-xts-plain64, 512-bit key" \
            grep -Eq 'cipher: +aes-xts-plain64' "$r/$name.dump"
        check "luks: $name opens with the key" grep -qx 0 "$r/$name.open.rc"
        check "luks: $name does not open with another key (exit 2)" test "$(fact "$name.wrong_key_rc")" = 2
        check "luks: $name: e2fsck -fn clean" grep -qx 0 "$r/$name.fsck.rc"
        check "luks: $name: the filesystem is labelled ${name#crypt-}" \
            grep -Eq "^Filesystem volume name: +${name#crypt-}\$" "$r/$name.tune2fs"
    done
    for name in crypt-APP crypt-APP_b; do
        check "luks: $name holds the rootfs" grep -qx 'sysinstall test rootfs v1' "$r/$name.fixture"
    done
    check "luks: no container left open after the install" \
        bash -c "! grep -q sysinstall- '$r/mapper-left'"
    check "luks: nothing left mounted" test ! -s "$r/mounts-left"
    check "luks: update with another key: exit 3" grep -qx 3 "$r/wrong.rc"
    check "luks: update with another key: failure code key_rejected" \
        grep -q '"code":"key_rejected"' "$r/wrong.out"
    check "luks: update with another key: nothing written (first 64 MiB)" \
        test -n "$(fact head_wrong)" -a "$(fact head_before_wrong)" = "$(fact head_wrong)"
    host_check gpt "$work/sd.img" "$lj"
    host_check fs "$work/sd.img" "$lj" LOGS EXTRA
    host_check boot "$lj" "$work/boot0.img" "$work/boot1.img" "$work/sd.img" \
        "$work/bup-v1.json" --slots a,b --smd initialize
    check "luks: a LUKS2 header at the start of each crypt- partition (from outside)" \
        python3 - "$work/sd.img" "$lj" <<'PY'
import json, sys
parts = {p["name"]: p for p in json.load(open(sys.argv[2]))["partitions"]}
with open(sys.argv[1], "rb") as f:
    for n in ("crypt-APP", "crypt-APP_b", "crypt-DATA"):
        f.seek(parts[n]["start_lba"] * 512)
        head = f.read(8)
        assert head[:6] == b"LUKS\xba\xbe" and head[6:8] == b"\x00\x02", (n, head)
PY
}

for s in "${scenarios[@]}"; do
    echo "== qemu scenario: $s"
    started=$(now)
    "scenario_${s//-/_}"
    timings+=("scenario:$s $(since "$started")")
done

summary qemu
