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
# Gate and knobs (environment):
#   SYSINSTALL_TEST_QEMU=1       run at all (the same switch as run.sh; when
#                                set, anything missing fails the tier)
#   SYSINSTALL_QEMU_TIMEOUT      seconds per boot before qemu is killed (default 240)
#   SYSINSTALL_QEMU_UEFI_DEADLINE seconds for the whole tier (default 600)
#   SYSINSTALL_QEMU_KEEP=1       keep the work directory (images, console logs)
#   SYSINSTALL_CACHE             kernel, firmware, .deb and venv cache (default ~/.cache/sysinstall)
#   SYSINSTALL_EDK2_VENV, SYSINSTALL_VIRTFW_VENV  the venvs tests/setup.sh makes
#
# Usage: SYSINSTALL_TEST_QEMU=1 tests/qemu/uefi.sh [smoke|partition|stage|efivarfs]...
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
for t in sgdisk mke2fs mdir mcopy fsck.fat python3 dpkg-deb hexdump; do
    command -v "$t" >/dev/null || die "needs $t (tests/setup.sh installs it)"
done
virtfw=${SYSINSTALL_VIRTFW_VENV:-$debs_cache/virt-firmware-venv}/bin/virt-fw-vars
[ -x "$virtfw" ] || die "needs virt-fw-vars (PyPI virt-firmware) in $(dirname "$(dirname "$virtfw")"): run tests/setup.sh"
edk2_python=${SYSINSTALL_EDK2_VENV:-$debs_cache/edk2-venv}/bin/python
edk2_certs=$("$edk2_python" -c 'import os, edk2basetools as e, edk2basetools.Capsule.GenerateCapsule
print(os.path.join(os.path.dirname(e.__file__), "Pkcs7Sign"))' 2>/dev/null) ||
    die "needs GenerateCapsule.py (PyPI edk2-basetools) in $(dirname "$(dirname "$edk2_python")"): run tests/setup.sh"

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(smoke partition stage efivarfs)
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
    firmware=$(qemu_firmware) || die "cannot fetch Debian's qemu-efi-aarch64 (no registry and nothing cached)"
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
    mke2fs -q -t ext4 -L INSTALLER -d "$work/payload" "$work/payload.img" 64M
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

fresh_nvme() {   # a blank NVMe disk
    rm -f "$work/nvme.img"
    truncate -s "$disk_bytes" "$work/nvme.img"
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
    "$host_bin" partition --layout "$layout" --device "$work/nvme.img" --yes >/dev/null ||
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
    check "stage: the new OsIndications is immutable in efivarfs" \
        bash -c "[[ '$(fact_of stage os_indications_lsattr)' == *i* ]]"
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
    check "efivarfs: a volatile variable (attributes 6) cannot be created" \
        bash -c "[ '$(fact_of $n volatile_rc)' != 0 ] && [ -z '$(fact_of $n volatile_left)' ]"
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
