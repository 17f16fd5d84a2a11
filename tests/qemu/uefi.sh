#!/usr/bin/env bash
# The UEFI tier: Debian's arm64 kernel booted through real UEFI firmware
# (Debian's AAVMF, EDK2 for qemu's -M virt, on two pflash drives with a
# writable copy of the variable store per scenario), so /sys/firmware/efi
# and efivarfs are real and variables persist across a power-off, as on an
# Orin. The user device is an NVMe disk (/dev/nvme0n1, partitions
# /dev/nvme0n1pN), a virtio disk carries the payload (installer/: the
# layout, the scenario's guest script, capsules), another brings the
# guest's results back. From the host, PyPI virt-firmware's virt-fw-vars
# seeds and reads the variable store, sgdisk the GPT, mtools and fsck.fat
# the ESP. What qemu cannot be: an Orin's firmware (no Tegra FMP, so a
# capsule is never applied; no ESRT; the boot-chain variables the firmware
# sets at every boot are seeded as ordinary non-volatile ones); see README.md.
#
# Scenarios (default: all, in this order); each is a function scenario_NAME
# below, with a guest script in guest/ (README.md: adding one):
#   smoke      the firmware formats a blank store; efivarfs mounted, no ESRT,
#              OsIndicationsSupported without the file-capsule bit, the NVMe
#              disk, dosfstools and chattr in the initramfs, sysinstall runs;
#              the guest's efivarfs and the host's reading of the store agree
#   partition  sysinstall layout/partition of the Orin Nano NVMe layout onto
#              /dev/nvme0n1 (twice): the kernel's nvme0n1pN nodes equal the
#              layout, the host checks the GPT with sgdisk
#   stage      a Jetson-like store (stale BootChainFwStatus=3 and
#              BootChainFwNext, RootfsStatusSlotB=0xFF, platform specs, both
#              chains' versions), an ESP made with mkfs.vfat in the guest,
#              `sysinstall status --stage CAPSULE --esp DEV` (then again: a
#              re-run finds it done); the host finds OsIndications=4, the
#              stale boot-chain variables gone, everything else as seeded,
#              TEGRA_BL.Cap byte for byte on the ESP; the next boot shows
#              that the firmware consumed OsIndications
#   efivarfs   the kernel's efivarfs rules sysinstall relies on: the immutable
#              flag, one write() per variable, O_TRUNC replaces, no volatile
#              variables from the OS, deletion, and a variable that persists
#              across a power-off (read by the host, then by the next boot)
#   install    `sysinstall install` of an Orin onto a blank 2 GiB NVMe
#              disk (tests/fixtures/layouts/orin-nvme-ab.xml) with a capsule,
#              over a stale store (BootChainFwStatus=3, BootChainFwNext=1,
#              RootfsStatusSlotB=0xFF, no platform specs): the host checks the
#              GPT (sgdisk), APP and APP_b (e2fsck, their trees against the
#              tarball), A_/B_kernel(-dtb) against the kernel payload's
#              entries, the ESP (mtools: the launcher, TEGRA_BL.Cap byte for
#              byte), the store (stale variables gone, RootfsStatusSlotA/B 0,
#              the platform specs created, OsIndications 4)
#   update     the next boot, BootChainFwCurrent seeded to A,
#              v2 without a capsule: only APP_b and B_kernel(-dtb) change,
#              RootfsStatusSlotB 0, BootChainFwNext 1, slot A as it was
#   interrupt  the install's start with the power cut at the
#              first unpack progress event; the same command on the next boot
#              finishes it and passes the install's checks
# Gate and knobs (environment):
#   SYSINSTALL_TEST_QEMU=1       run at all (the same switch as run.sh; when
#                                set, anything missing fails the tier)
#   SYSINSTALL_QEMU_TIMEOUT      seconds per boot before qemu is killed (default 240)
#   SYSINSTALL_QEMU_UEFI_DEADLINE seconds for the whole tier (default 600)
#   SYSINSTALL_QEMU_KEEP=1       keep the work directory (images, console logs)
#   SYSINSTALL_CACHE             kernel, firmware, .deb and venv cache (default ~/.cache/sysinstall)
#   SYSINSTALL_EDK2_VENV, SYSINSTALL_VIRTFW_VENV  the venvs tests/setup.sh makes
#
# Usage: SYSINSTALL_TEST_QEMU=1 tests/qemu/uefi.sh [smoke|partition|stage|efivarfs|install|update|interrupt]...
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/qemu
# shellcheck source=lib.sh
. "$here/lib.sh"

tier="qemu UEFI tier"
skip() { echo "SKIP $tier: $*"; exit 0; }
die() { echo "FAIL $tier: $*" >&2; exit 1; }
[ "${SYSINSTALL_TEST_QEMU:-}" = 1 ] ||
    skip "off; set SYSINSTALL_TEST_QEMU=1 to boot Debian's arm64 kernel through AAVMF (about 3 minutes)"
command -v qemu-system-aarch64 >/dev/null ||
    die "qemu-system-aarch64 is not installed (tests/setup.sh installs qemu-system-arm)"
[ "$(id -u)" = 0 ] || die "needs root (loop mounts for the slot checks, mknod for the rootfs fixture)"
for t in sgdisk mke2fs e2fsck dumpe2fs mdir mcopy fsck.fat python3 dpkg-deb hexdump losetup zstd \
         getfacl setfacl setcap setfattr sha256sum; do
    command -v "$t" >/dev/null || die "needs $t (tests/setup.sh installs it)"
done
virtfw=${SYSINSTALL_VIRTFW_VENV:-$debs_cache/virt-firmware-venv}/bin/virt-fw-vars
[ -x "$virtfw" ] || die "needs virt-fw-vars (PyPI virt-firmware) in $(dirname "$(dirname "$virtfw")"): run tests/setup.sh"
edk2_python=${SYSINSTALL_EDK2_VENV:-$debs_cache/edk2-venv}/bin/python
edk2_certs=$("$edk2_python" -c 'import os, edk2basetools as e, edk2basetools.Capsule.GenerateCapsule
print(os.path.join(os.path.dirname(e.__file__), "Pkcs7Sign"))' 2>/dev/null) ||
    die "needs GenerateCapsule.py (PyPI edk2-basetools) in $(dirname "$(dirname "$edk2_python")"): run tests/setup.sh"

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(smoke partition stage efivarfs install update interrupt)
timeout_s=${SYSINSTALL_QEMU_TIMEOUT:-240}
deadline_s=${SYSINSTALL_QEMU_UEFI_DEADLINE:-600}   # the whole tier, preparation included
# The Orin Nano devkit on NVMe (docs/spec/t234-boot-chain.md §5): its layout
# needs a disk of at least 31.4 GB, given sparse.
layout=$repo/layouts/jetson-orin-nano-devkit-nvme.xml
tnspec=3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-nvme0n1p1
disk_bytes=$((32 * 1024 * 1024 * 1024))
nvme_serial=SYSINSTALL-NVME0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
host_bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/sysinstall
work=$(mktemp -d /tmp/sysinstall-qemu-uefi.XXXXXX)
if [ "${SYSINSTALL_QEMU_KEEP:-}" = 1 ]; then
    echo "$tier: work directory $work (kept)"
else
    trap 'rm -rf "$work"' EXIT
fi

# --- preparation ------------------------------------------------------------
prepare() {
    echo "== $tier: building the static binaries"
    "$repo/scripts/build-static.sh" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
    grep -E '^(aarch64|x86_64)-' "$work/build.log"
    deb_ensure_arch arm64 || die "cannot add the arm64 architecture to apt"
    echo "== $tier: kernel and firmware"
    kroot=$(qemu_kernel arm64) || die "cannot fetch Debian's arm64 kernel (no registry and nothing cached)"
    kver=$(ls -1 "$kroot/lib/modules")
    kernel=$kroot/boot/vmlinuz-$kver
    firmware=$(qemu_firmware) || die "no AAVMF firmware (tests/setup.sh installs qemu-efi-aarch64)"
    echo "   $kernel"
    echo "   $firmware"
    echo "== $tier: initramfs"
    "$repo/initramfs/build.sh" --kernel-root "$kroot" --overlay "$here/overlay" \
        --output "$work/initrd.cpio.gz" | tail -n 4
    echo "== $tier: layout $layout"
    "$host_bin" layout "$layout" --format json --disk-sectors $((disk_bytes / 512)) \
        >"$work/layout.json" || die "sysinstall layout failed on $layout"
    timings+=("prepare $(since "$t0")")
}

# --- guests -----------------------------------------------------------------
# boot NAME CMDLINE [KILL_REGEX KILL_DELAY]: one guest run through AAVMF over
# the current images: $work/vars.fd (the variable store), $work/nvme.img
# (the NVMe disk), $work/payload.img. lib.sh's qemu_run bounds it and
# unpacks the results into $work/NAME.results.
boot() {
    local name=$1 cmdline=$2
    qemu_run "$name" "${3:-}" "${4:-0}" -M virt -cpu cortex-a57 -smp 2 -m 1024 \
        -nographic -no-reboot -nic none \
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$firmware/AAVMF_CODE.fd" \
        -drive "if=pflash,format=raw,unit=1,file=$work/vars.fd" \
        -kernel "$kernel" -initrd "$work/initrd.cpio.gz" \
        -append "console=ttyAMA0 panic=-1 quiet sysinstall.wait=10 sysinstall.device=/dev/nvme0n1 $cmdline" \
        -drive "file=$work/nvme.img,format=raw,if=none,id=nvm" \
        -device "nvme,serial=$nvme_serial,drive=nvm" \
        -drive "file=$work/payload.img,format=raw,if=none,id=vd0,readonly=on" \
        -device virtio-blk-pci,drive=vd0,serial=payload \
        -drive "file=$work/results.img,format=raw,if=none,id=vd1" \
        -device virtio-blk-pci,drive=vd1,serial=results
}

# The payload disk is made from $work/payload/installer: reset it, add files,
# then guest_boot (or boot with sysinstall.auto=1 for an install).
payload_reset() {
    rm -rf "$work/payload"
    mkdir -p "$work/payload/installer"
    cp "$layout" "$work/payload/installer/layout.xml"
}
payload_image() {
    rm -f "$work/payload.img"
    truncate -s 64M "$work/payload.img"
    mke2fs -q -F -t ext4 -L INSTALLER -d "$work/payload" "$work/payload.img" 64M
}

# guest_boot NAME SCRIPT [KILL_REGEX KILL_DELAY]: boot with guest/SCRIPT as
# the guest's test (the overlay's hook runs it, saves $R, powers off).
guest_boot() {
    local name=$1 script=$2
    cp "$here/guest/lib.sh" "$work/payload/installer/guest-lib.sh"
    cp "$here/guest/$script" "$work/payload/installer/guest-test.sh"
    payload_image
    boot "$name" "sysinstall.test=script" "${3:-}" "${4:-0}" || return
    local r=$work/$name.results
    if [ ! -f "$r/guest.rc" ]; then
        fail "$name: the guest script left no status (see $work/$name.console)"
        return 1
    fi
    check "$name: the guest script ran to its end" grep -qx 0 "$r/guest.rc"
}

fresh_nvme() {   # [BYTES]: a blank NVMe disk
    rm -f "$work/nvme.img"
    truncate -s "${1:-$disk_bytes}" "$work/nvme.img"
}

# The store the firmware formatted at its first boot (Debian's AAVMF_VARS.fd
# is all zeroes and virt-fw-vars cannot read that): made by the smoke
# scenario, or by a boot of its own when smoke did not run first.
formatted_store() {
    if [ ! -f "$work/vars-formatted.fd" ]; then
        echo "   the firmware formats a blank variable store (one boot)"
        fresh_nvme
        cp "$firmware/AAVMF_VARS.fd" "$work/vars.fd"
        payload_reset
        guest_boot format inspect.sh || return 1
        cp "$work/vars.fd" "$work/vars-formatted.fd"
    fi
    cp "$work/vars-formatted.fd" "$work/vars.fd"
}

vars_dump() {   # OUT.json: the store as the host reads it
    python3 "$here/uefivars.py" --tool "$virtfw" dump "$work/vars.fd" "$1"
}
vars_seed() {   # VAR...: see uefivars.py
    python3 "$here/uefivars.py" --tool "$virtfw" seed "$work/vars.fd" "$@"
}

# --- checks -------------------------------------------------------------------
fact_is() {   # NAME KEY VALUE: the guest recorded KEY=VALUE
    grep -qxF "$2=$3" "$work/$1.results/facts" 2>/dev/null
}
fact_not() {   # NAME KEY: the guest recorded no KEY
    ! grep -q "^$2=" "$work/$1.results/facts" 2>/dev/null
}
fact_of() {   # NAME KEY
    sed -n "s/^$2=//p" "$work/$1.results/facts" 2>/dev/null | head -n 1
}
# json_is DESCRIPTION FILE EXPRESSION: a Python expression over d, the JSON
# document in FILE (for `sysinstall status` documents also r = d["report"],
# s = d["staged"], ops = [(op, result)] of the staged operations).
json_is() {
    local what=$1 file=$2 expr=$3
    if python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
r, s = d.get("report") or {}, d.get("staged") or {}
ops = [(o["op"], o["result"]) for o in s.get("operations", [])]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$file" "$expr" 2>"$work/json.err"; then
        ok "$what"
    else
        fail "$what ($(basename "$file"): $expr; $(tail -c 300 "$work/json.err" | tr '\n' ' '))"
    fi
}
rc_is() {   # DESCRIPTION NAME STEP RC: the guest's command STEP exited RC
    local got
    got=$(cat "$work/$2.results/$3.rc" 2>/dev/null || echo none)
    if [ "$got" = "$4" ]; then
        ok "$1"
    else
        fail "$1 (exit status $got; stderr: $(tail -c 400 "$work/$2.results/$3.err" 2>/dev/null | tr '\n' ' '))"
    fi
}
hex_of() { od -An -tx1 -v | tr -d ' \n'; }

# --- fixtures -------------------------------------------------------------------
# The capsule: a T234 bl_only_payload for the board (tests/fixtures/mkbup.py)
# wrapped by EDK2's GenerateCapsule as meta-tegra signs tegra-bl.cap, with
# the EDK2 test certificates; version and LSV 36.4.3.
capsule_version=0x00240403
capsule() {
    [ -f "$work/tegra-bl.cap" ] && return 0
    local t
    t=$(now)
    python3 "$repo/tests/fixtures/mkbup.py" --t234 firmware --layout "$layout" --tnspec "$tnspec" \
        --decoy-fab 000 -o "$work/bl_only_payload" --manifest "$work/bl_only_payload.json"
    "$edk2_python" -m edk2basetools.Capsule.GenerateCapsule --encode --monotonic-count 1 \
        --fw-version "$capsule_version" --lsv "$capsule_version" \
        --guid bf0d4599-20d4-414e-b2c5-3595b1cda402 \
        --signer-private-cert "$edk2_certs/TestCert.pem" \
        --other-public-cert "$edk2_certs/TestSub.pub.pem" \
        --trusted-public-cert "$edk2_certs/TestRoot.pub.pem" \
        -o "$work/tegra-bl.cap" "$work/bl_only_payload" >"$work/capsule.log" 2>&1 ||
        { cat "$work/capsule.log"; fail "GenerateCapsule failed"; return 1; }
    timings+=("capsule $(since "$t")")
}

# A Jetson-like store (docs/spec/t234-boot-chain.md §3.1): a capsule that
# was cancelled (BootChainFwStatus 3) and a switch still pending, slot B
# marked unbootable, the platform specs meta-tegra writes, chain A running
# 36.4.3 and chain B 35.6.0. BootChainFwCurrent and SystemFwVersions are
# volatile on a Jetson (the firmware sets them at every boot); AAVMF does
# not, so they are seeded as NV stand-ins: a mock of firmware behaviour.
platform_spec=3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-
compat_spec=3767--0005--1--jetson-orin-nano-devkit-
seed_jetson() {
    vars_seed BootChainFwStatus=u32:3 BootChainFwNext=u32:1 \
        RootfsStatusSlotA=u32:0 RootfsStatusSlotB=u32:0xff L4TDefaultBootMode=u32:1 \
        "TegraPlatformSpec=ascii:$platform_spec" "TegraPlatformCompatSpec=ascii:$compat_spec" \
        BootChainFwCurrent=u32:0 SystemFwVersions=u32x2:0x00240403,0x00230600
}

# --- scenarios ----------------------------------------------------------------
scenario_smoke() {
    fresh_nvme
    cp "$firmware/AAVMF_VARS.fd" "$work/vars.fd"   # zeroes: the firmware formats it
    payload_reset
    guest_boot smoke smoke.sh || return 0
    local r=$work/smoke.results
    check "smoke: booted through UEFI (/sys/firmware/efi)" fact_is smoke efi yes
    check "smoke: /init mounted efivarfs" fact_is smoke efivarfs mounted
    check "smoke: no ESRT (AAVMF has none; capsule results cannot be read back)" fact_not smoke esrt
    # 0x41: boot to the firmware UI, platform recovery; no 0x4 (file capsules).
    check "smoke: OsIndicationsSupported = 0x41, no file-capsule bit (capsules are never applied)" \
        fact_is smoke os_indications_supported 060000004100000000000000
    check "smoke: /dev/nvme0n1 is the ${disk_bytes}-byte NVMe disk" \
        fact_is smoke nvme0n1_sectors $((disk_bytes / 512))
    check "smoke: its serial is $nvme_serial" fact_is smoke nvme0n1_serial "$nvme_serial"
    check "smoke: 512-byte logical blocks" fact_is smoke nvme0n1_lbs 512
    check "smoke: efivarfs variables are immutable (lsattr shows i)" \
        bash -c "[[ '$(fact_of smoke lsattr_os_indications_supported)' == *i* ]]"
    check "smoke: mkfs.vfat is dosfstools' (/sbin), not busybox's" fact_is smoke mkfs_vfat_path /sbin/mkfs.vfat
    check "smoke: chattr is in the initramfs (e2fsprogs)" fact_is smoke chattr_path /usr/bin/chattr
    check "smoke: sysinstall --version in the guest equals the host's" \
        test "$(cat "$r/version.out" 2>/dev/null)" = "$("$host_bin" --version)"
    json_is "smoke: sysinstall status reads efivarfs (no boot chain on plain AAVMF)" "$r/status.out" \
        'd["report"]["running_chain"] is None and d["firmware"]["esrt"] is None'
    vars_dump "$work/smoke.vars.json" || { fail "smoke: virt-fw-vars cannot read the store"; return 0; }
    ok "smoke: the firmware formatted the store and virt-fw-vars reads it"
    # Both views of the store: every non-volatile variable the host reads is
    # a file in the guest's efivarfs.
    check "smoke: every NV variable virt-fw-vars reads is in the guest's efivarfs" python3 -c '
import json, sys
names = set(open(sys.argv[2]).read().split())
nv = [v["name"] + "-" + v["guid"] for v in json.load(open(sys.argv[1]))["variables"]
      if v["attr"] & 1 and v["attr"] & 4]
missing = [n for n in nv if n not in names]
print("   %d runtime-visible NV variables, missing in the guest: %s" % (len(nv), missing or "none"))
sys.exit(1 if missing or not nv else 0)' "$work/smoke.vars.json" "$r/efivars.names"
    cp "$work/vars.fd" "$work/vars-formatted.fd"
}

scenario_partition() {
    fresh_nvme
    formatted_store || return 0
    payload_reset
    guest_boot partition partition.sh || return 0
    local r=$work/partition.results
    rc_is "partition: sysinstall layout --device /dev/nvme0n1 exits 0" partition layout 0
    check "partition: the guest's layout of the real disk equals the host's for its size" \
        python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
        "$r/layout.out" "$work/layout.json"
    rc_is "partition: sysinstall partition --yes exits 0" partition partition 0
    host_check nodes "$r/nodes" "$work/layout.json" --disk nvme0n1
    check "partition: devtmpfs made the /dev/nvme0n1pN nodes" \
        test "$(grep -c '^/dev/nvme0n1p[0-9]*$' "$r/devnodes")" = \
        "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["partitions"]))' "$work/layout.json")"
    rc_is "partition: a second run over its own table exits 0" partition partition2 0
    check "partition: the kernel's view is the same after the second run" cmp -s "$r/nodes" "$r/nodes2"
    host_check gpt "$work/nvme.img" "$work/layout.json"
}

scenario_stage() {
    capsule || return 0
    fresh_nvme
    # The GPT comes from the host this time (sysinstall on the image file):
    # this scenario is about the ESP and the variables.
    "$host_bin" partition --layout "$layout" --device "$work/nvme.img" --yes >"$work/stage.partition.log" 2>&1 ||
        { fail "stage: partitioning the image on the host"; return 0; }
    formatted_store || return 0
    seed_jetson
    vars_dump "$work/stage.seeded.json"
    payload_reset
    cp "$work/tegra-bl.cap" "$work/payload/installer/tegra-bl.cap"
    guest_boot stage stage.sh || return 0
    local r=$work/stage.results cap_bytes
    cap_bytes=$(stat -c %s "$work/tegra-bl.cap")
    rc_is "stage: mkfs.vfat made the ESP ($(fact_of stage esp))" stage mkfs 0
    json_is "stage: before, status sees the seeded state (status 3, switch to B pending, B unbootable, second pass to 36.4.3)" \
        "$r/before.out" 'r["chain_status"] == 3 and r["switch_requested"] == 1 and r["rootfs_status"] == [0, 255] and r["running_chain"] == "A" and r["second_pass"]["state"] == "needed" and r["second_pass"]["to"] == 0x00240403'
    rc_is "stage: sysinstall status --stage exits 0" stage stage 0
    json_is "stage: the capsule ($cap_bytes bytes) staged on the ESP partition" "$r/stage.out" \
        "d['staged']['bytes'] == $cap_bytes and d['staged']['esp'] == '$(fact_of stage esp)'"
    json_is "stage: BootChainFwStatus and BootChainFwNext deleted, then OsIndications set, last" "$r/stage.out" \
        'ops[:2] == [("delete BootChainFwStatus", "changed"), ("delete BootChainFwNext", "changed")] and ops[-1] == ("set OsIndications = 0x4", "changed") and all(res != "changed" for _, res in ops[2:-1])'
    rc_is "stage: the same command again exits 0" stage stage2 0
    json_is "stage: ... and finds every operation already done" "$r/stage2.out" \
        'len(ops) >= 3 and all(res != "changed" for _, res in ops)'
    json_is "stage: after, status sees the capsule requested and nothing that would cancel it" "$r/after.out" \
        'r["capsule_requested"] and r["chain_status"] is None and r["switch_requested"] is None'
    check "stage: sysinstall left nothing mounted" test ! -s "$r/mounts-left"
    # The kernel leaves the global variables it knows as removable
    # (variable_validate[] in drivers/firmware/efi/vars.c: OsIndications is
    # one), and makes the others immutable (efivarfs: NVIDIA's are).
    check "stage: the new OsIndications is not immutable in efivarfs (a known global variable)" \
        bash -c "[[ '$(fact_of stage os_indications_lsattr)' != *i* ]]"
    vars_dump "$work/stage.vars.json"
    host_check vars "$work/stage.vars.json" \
        --value OsIndications=070000000400000000000000 \
        --absent BootChainFwStatus --absent BootChainFwNext \
        --same "$work/stage.seeded.json" RootfsStatusSlotA RootfsStatusSlotB L4TDefaultBootMode \
        TegraPlatformSpec TegraPlatformCompatSpec BootChainFwCurrent SystemFwVersions
    check "stage: the guest's efivarfs showed the OsIndications the host reads" \
        grep -qx "OsIndications-8be4df61-93ca-11d2-aa0d-00e098032b8c 070000000400000000000000" "$r/vars-after"
    host_check esp "$work/nvme.img" "$work/layout.json" esp \
        --file "EFI/UpdateCapsule/TEGRA_BL.Cap=$work/tegra-bl.cap"

    # The reboot: AAVMF deletes OsIndications (it has no file-capsule
    # support, so the capsule itself stays where it is, unapplied).
    payload_reset
    guest_boot stage-next inspect.sh || return 0
    r=$work/stage-next.results
    vars_dump "$work/stage-next.vars.json"
    host_check vars "$work/stage-next.vars.json" --absent OsIndications \
        --same "$work/stage.vars.json" RootfsStatusSlotB TegraPlatformSpec SystemFwVersions
    check "stage-next: efivarfs has no OsIndications either" bash -c "! grep -q '^OsIndications-' '$r/vars'"
    json_is "stage-next: status no longer sees a capsule request" "$r/status.out" \
        'not d["report"]["capsule_requested"]'
}

scenario_efivarfs() {
    fresh_nvme
    formatted_store || return 0
    vars_seed SysinstallDeleteMe=u32:0x5a
    local token tok_hex
    token=sysinstall-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
    tok_hex=$(printf '%s' "$token" | hex_of)
    payload_reset
    printf '%s' "$token" >"$work/payload/installer/token"
    guest_boot efivarfs efivarfs.sh || return 0
    local n=efivarfs
    check "efivarfs: one write of attributes and data creates a variable" \
        fact_is $n create_hex 0700000001000000
    check "efivarfs: the kernel marks it immutable (lsattr: i)" \
        bash -c "[[ '$(fact_of $n create_flags)' == *i* ]]"
    check "efivarfs: overwriting it without chattr -i fails ..." \
        bash -c "[ '$(fact_of $n overwrite_immutable_rc)' != 0 ] && grep -q 'not permitted' '$work/$n.results/overwrite.err'"
    check "efivarfs: ... and leaves the value" fact_is $n overwrite_immutable_hex 0700000001000000
    check "efivarfs: after chattr -i, O_TRUNC and one write replace the value (what sysinstall does)" \
        bash -c "[ '$(fact_of $n chattr_rc)' = 0 ] && [ '$(fact_of $n overwrite_rc)' = 0 ] && [ '$(fact_of $n overwrite_hex)' = 0700000000000000 ] && [ '$(fact_of $n overwrite_size)' = 8 ]"
    check "efivarfs: attributes and data in two write()s fail and delete the variable" \
        bash -c "[ '$(fact_of $n two_created_hex)' = 0700000002000000 ] && [ '$(fact_of $n two_writes_rc)' != 0 ] && [ -z '$(fact_of $n two_writes_left)' ]"
    check "efivarfs: a volatile variable (attributes 6) cannot be created (the write fails, an empty file at most)" \
        bash -c "[ '$(fact_of $n volatile_rc)' != 0 ] && [ '$(fact_of $n volatile_left_size)' -eq 0 ]"
    check "efivarfs: the guest sees the variable the host seeded" fact_is $n seeded_delete_hex 070000005a000000
    check "efivarfs: rm without chattr -i cannot delete it; with it, it can" \
        bash -c "[ '$(fact_of $n delete_immutable_left)' = yes ] && [ '$(fact_of $n delete_rc)' = 0 ]"
    check "efivarfs: a new variable holds its value" fact_is $n persist_hex "07000000$tok_hex"
    vars_dump "$work/efivarfs.vars.json"
    host_check vars "$work/efivarfs.vars.json" \
        --value BootChainFwNext=0700000000000000 --value "SysinstallPersist=07000000$tok_hex" \
        --absent SysinstallTwoWrites --absent SysinstallVolatile --absent SysinstallDeleteMe

    # After the power-off, the next boot reads the variable back.
    payload_reset
    guest_boot efivarfs-next inspect.sh || return 0
    check "efivarfs-next: the variable survived the power-off" \
        grep -qx "SysinstallPersist-781e084c-a330-417c-b678-38e696380cb9 07000000$tok_hex" \
        "$work/efivarfs-next.results/vars"
    json_is "efivarfs-next: sysinstall status reads the BootChainFwNext the shell wrote" \
        "$work/efivarfs-next.results/status.out" 'd["report"]["switch_requested"] == 0'
}

# --- the T234 install ---------------------------------------------------------
# `sysinstall install` of a T234 board (docs/spec/t234-boot-chain.md §3.5,
# §8) onto a blank 2 GiB NVMe disk with tests/fixtures/layouts/orin-nvme-ab.xml
# (rootfs A/B, the A/B kernels, esp; the QSPI device is never written). The
# guest runs tests/qemu/guest/install.sh with the arguments of
# installer/install.args; the host checks the disk and the store.
ab_layout=$repo/tests/fixtures/layouts/orin-nvme-ab.xml
ab_disk_bytes=$((2 * 1024 * 1024 * 1024))
# rootfs_fixture VERSION: $work/rootfs-VERSION.tar.zst from
# tests/fixtures/mkrootfs.sh (about 30 s each here), kept in the cache under
# the hash of the scripts that make it: later runs copy it. (The .debs it
# unpacks are cached by version too; a new Debian point release is picked up
# when mkrootfs.sh or debs.sh change, or after rm -r $debs_cache/fixtures.)
rootfs_fixture() {
    local v=$1 key cached
    key=$(cat "$repo/tests/fixtures/mkrootfs.sh" "$repo/scripts/debs.sh" | sha256sum | cut -c1-16)
    cached=$debs_cache/fixtures/rootfs-$v-$key.tar.zst
    if [ ! -s "$cached" ]; then
        mkdir -p "$debs_cache/fixtures"
        "$repo/tests/fixtures/mkrootfs.sh" "$cached.tmp" --tag "$v" >/dev/null || return 1
        mv "$cached.tmp" "$cached"
    fi
    cp "$cached" "$work/rootfs-$v.tar.zst"
}
install_fixtures() {
    [ -f "$work/ab-layout.json" ] && return 0
    local t v
    t=$(now)
    capsule || return 1
    "$host_bin" layout "$ab_layout" --format json --disk-sectors $((ab_disk_bytes / 512)) \
        >"$work/ab-layout.json" || { fail "sysinstall layout failed on $ab_layout"; return 1; }
    for v in v1 v2; do
        python3 "$repo/tests/fixtures/mkbup.py" --t234 kernel --layout "$ab_layout" \
            --tnspec "$tnspec" --compat-spec "$compat_spec" --decoy-fab 000 --seed "$v" \
            -o "$work/kernel-$v" --manifest "$work/kernel-$v.json"
        rootfs_fixture "$v" || { fail "mkrootfs.sh --tag $v failed"; return 1; }
    done
    # A stand-in for the launcher (L4TLauncher's BOOTAA64.efi): an arm64 PE
    # header, then bytes of no meaning; the install copies it, nothing runs it.
    python3 - "$work/BOOTAA64.efi" <<'PY'
import hashlib, struct, sys
img = bytearray(hashlib.sha256(b"launcher").digest() * 2048)   # 64 KiB
img[0:2] = b"MZ"
img[0x3c:0x40] = struct.pack("<I", 0x80)
img[0x80:0x86] = b"PE\0\0" + struct.pack("<H", 0xAA64)
open(sys.argv[1], "wb").write(img)
PY
    timings+=("install-fixtures $(since "$t")")
}

# install_boot NAME VERSION ARGS [KILL_REGEX KILL_DELAY]: one guest run of
# the install with rootfs-VERSION and kernel-VERSION over the current disk
# and store (ARGS: the options after the common ones).
install_boot() {
    local name=$1 v=$2 args=$3
    payload_reset
    cp "$ab_layout" "$work/payload/installer/layout.xml"
    cp "$work/rootfs-$v.tar.zst" "$work/payload/installer/rootfs.tar.zst"
    cp "$work/kernel-$v" "$work/payload/installer/kernel_only_payload"
    cp "$work/tegra-bl.cap" "$work/payload/installer/tegra-bl.cap"
    cp "$work/BOOTAA64.efi" "$work/payload/installer/BOOTAA64.efi"
    echo "--yes --layout /installer/layout.xml --device /dev/nvme0n1 $args" \
        "--bup /installer/kernel_only_payload --launcher /installer/BOOTAA64.efi" \
        "/installer/rootfs.tar.zst" >"$work/payload/installer/install.args"
    cp "$here/guest/lib.sh" "$work/payload/installer/guest-lib.sh"
    cp "$here/guest/install.sh" "$work/payload/installer/guest-test.sh"
    payload_image
    boot "$name" "sysinstall.test=script" "${4:-}" "${5:-0}"
}

# The stale store of a board whose last capsule was cancelled, a chain switch
# still pending and slot B marked unbootable (§3.1); no platform specs: the
# install creates them from --tnspec.
seed_stale() {
    vars_seed BootChainFwStatus=u32:3 BootChainFwNext=u32:1 RootfsStatusSlotB=u32:0xff
}

# verify_t234 NAME ROOTFS-VERSION KERNEL-VERSION SLOTS [OLD-VERSION]: the
# install of NAME exited 0 with PASS last; GPT, the slots written (and, with
# OLD-VERSION, the others as before), the kernels. Status 1 when the
# install failed (nothing else is checked then).
verify_t234() {
    local name=$1 v=$2 slots=$3 old=${4:-} r=$work/$1.results img=$work/nvme.img lj=$work/ab-layout.json
    rc_is "$name: sysinstall install exits 0" "$name" install 0
    if tail -n 1 "$r/install.out" 2>/dev/null | grep -q '^PASS: '; then
        ok "$name: its last line is PASS:"
    else
        fail "$name: its last line is PASS: (the last lines of stdout and stderr follow)"
        tail -n 3 "$r/install.out" 2>/dev/null | sed 's/^/     | /'
        tail -n 8 "$r/install.err" 2>/dev/null | sed 's/^/     | /'
    fi
    if [ "$(cat "$r/install.rc" 2>/dev/null)" != 0 ]; then
        fail "$name: the disk and the store are not checked (the install failed; console: $work/$name.console)"
        return 1
    fi
    check "$name: sysinstall left nothing mounted" test ! -s "$r/mounts-left"
    host_check gpt "$img" "$lj"
    host_check nodes "$r/nodes" "$lj" --disk nvme0n1
    local slot part
    for slot in a b; do
        part=APP; [ "$slot" = b ] && part=APP_b
        if [[ ",$slots," == *",$slot,"* ]]; then
            host_check fs "$img" "$lj" "$part"
            host_check tree "$img" "$lj" "$part" "$work/rootfs-$v.tar.zst"
        elif [ -n "$old" ]; then
            host_check tree "$img" "$lj" "$part" "$work/rootfs-$old.tar.zst"
        fi
    done
    host_check kernel "$img" "$lj" "$work/kernel-$v.json" --slots "$slots" \
        ${old:+--old "$work/kernel-$old.json"}
}

scenario_install() {
    install_fixtures || return 0
    formatted_store || return 0   # (first: it may boot over a disk of its own)
    fresh_nvme "$ab_disk_bytes"
    seed_stale
    vars_dump "$work/install.seeded.json"
    install_boot install v1 "--tnspec $tnspec --capsule /installer/tegra-bl.cap" || return 0
    local r=$work/install.results
    verify_t234 install v1 a,b || return 0
    check "install: the plan event says initial" grep -q '"kind":"plan".*"mode":"initial"\|"mode":"initial".*"kind":"plan"' "$r/events.jsonl"
    host_check esp "$work/nvme.img" "$work/ab-layout.json" esp \
        --file "EFI/BOOT/BOOTAA64.efi=$work/BOOTAA64.efi" \
        --file "EFI/UpdateCapsule/TEGRA_BL.Cap=$work/tegra-bl.cap"
    vars_dump "$work/install.vars.json"
    host_check vars "$work/install.vars.json" \
        --absent BootChainFwStatus --absent BootChainFwNext \
        --value RootfsStatusSlotA=0700000000000000 --value RootfsStatusSlotB=0700000000000000 \
        --value OsIndications=070000000400000000000000 \
        --value "TegraPlatformSpec=07000000$(printf '%s' "$platform_spec" | hex_of)" \
        --value "TegraPlatformCompatSpec=07000000$(printf '%s' "$compat_spec" | hex_of)"
    check "install: the guest's efivarfs showed the OsIndications the host reads" \
        grep -qx "OsIndications-8be4df61-93ca-11d2-aa0d-00e098032b8c 070000000400000000000000" "$r/vars-after"
}

# update: the install's disk and store, one boot later (AAVMF has consumed
# OsIndications), the board running chain and slot A (BootChainFwCurrent
# seeded 0), slot B marked unbootable again; v2 without a capsule: auto mode
# writes only slot B (APP_b, B_kernel, B_kernel-dtb) and asks for chain B
# with BootChainFwNext.
scenario_update() {
    if [ ! -f "$work/install.vars.json" ] || [ ! -s "$work/nvme.img" ]; then
        fail "update: needs the install scenario's disk and store (run: install update)"
        return 0
    fi
    vars_seed BootChainFwCurrent=u32:0 RootfsStatusSlotB=u32:0xff
    vars_dump "$work/update.seeded.json"
    install_boot update v2 "--no-capsule" || return 0
    local r=$work/update.results
    verify_t234 update v2 b v1 || return 0
    check "update: the plan event says update" grep -q '"kind":"plan".*"mode":"update"\|"mode":"update".*"kind":"plan"' "$r/events.jsonl"
    host_check esp "$work/nvme.img" "$work/ab-layout.json" esp \
        --file "EFI/BOOT/BOOTAA64.efi=$work/BOOTAA64.efi"
    vars_dump "$work/update.vars.json"
    host_check vars "$work/update.vars.json" \
        --absent BootChainFwStatus --absent OsIndications \
        --value RootfsStatusSlotB=0700000000000000 --value BootChainFwNext=0700000001000000 \
        --same "$work/update.seeded.json" RootfsStatusSlotA BootChainFwCurrent \
        TegraPlatformSpec TegraPlatformCompatSpec
}

# interrupt: the install's start again, but the power is cut (qemu SIGKILLed)
# once the unpack reports progress; the next boot runs the same command,
# which must finish the job and pass every check of install.
unpack_progress='"kind":"progress".*"phase":"unpack"|"phase":"unpack".*"kind":"progress"'
scenario_interrupt() {
    install_fixtures || return 0
    formatted_store || return 0   # (first: it may boot over a disk of its own)
    fresh_nvme "$ab_disk_bytes"
    seed_stale
    local args="--tnspec $tnspec --capsule /installer/tegra-bl.cap"
    if ! install_boot interrupt-cut v1 "$args" "$unpack_progress" 1; then
        fail "interrupt: no power cut happened (no unpack progress event before the guest stopped)"
        return 0
    fi
    check "interrupt: the cut came before the end" \
        bash -c "! grep -q '^\[guest\] sysinstall install exited' '$work/interrupt-cut.console'"
    install_boot interrupt-rerun v1 "$args" || return 0
    verify_t234 interrupt-rerun v1 a,b || return 0
    host_check esp "$work/nvme.img" "$work/ab-layout.json" esp \
        --file "EFI/BOOT/BOOTAA64.efi=$work/BOOTAA64.efi" \
        --file "EFI/UpdateCapsule/TEGRA_BL.Cap=$work/tegra-bl.cap"
    vars_dump "$work/interrupt.vars.json"
    host_check vars "$work/interrupt.vars.json" \
        --absent BootChainFwStatus --absent BootChainFwNext \
        --value RootfsStatusSlotA=0700000000000000 --value RootfsStatusSlotB=0700000000000000 \
        --value OsIndications=070000000400000000000000
}

for s in "${scenarios[@]}"; do
    declare -F "scenario_$s" >/dev/null || { echo "$tier: unknown scenario $s" >&2; exit 2; }
done
t0=$(now)
prepare
for s in "${scenarios[@]}"; do
    echo "== $tier scenario: $s"
    started=$(now)
    "scenario_$s"
    timings+=("scenario:$s $(since "$started")")
done

summary "$tier"
