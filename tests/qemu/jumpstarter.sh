#!/usr/bin/env bash
# The Jumpstarter tier: one real install driven through the Jumpstarter driver
# of contrib/jumpstarter-driver-sysinstall, in Jumpstarter's local mode, over
# the serial console of the SD card tier's guest.
#
#   1. the unit tests of the driver (pytest: the event parser, the console
#      conversation against a fake console);
#   2. the SD card tier's guest (tests/qemu/run.sh: Debian's arm64 kernel, the
#      upgrader initramfs with Debian's busybox-static, a blank 4 GiB SD card,
#      the payload disk with the v1 rootfs, BUP, layout, site configuration)
#      boots WITHOUT sysinstall.auto: the upgrader leaves its shell on the
#      console, which qemu serves on a local TCP socket;
#   3. an exporter configuration made here: a SysinstallFlasher whose serial
#      child is Jumpstarter's PySerial driver on that socket and whose power
#      child is Jumpstarter's MockPower (qemu has no power switch we drive: the
#      guest is already on; the mock is switched "on" to exercise the path);
#   4. first a source that does not exist (j must exit 3 with input_missing in
#      its JSON, no retry), then
#      `jmp shell --exporter-config FILE -- j board flash /installer/image.tar.zst
#      --checksum-file ... -O '--layout ... --bup ... --config ... --tnspec ...'
#      --after poweroff`: the client waits for the prompt, sets the guest's
#      clock from the exporter's, runs sysinstall with --events console (or
#      json when the binary predates the framed form), parses the events,
#      prints the result as JSON and powers the guest off;
#   5. checks: exit 0 and a pass summary in the JSON, the guest clock set,
#      progress logged, framed events when the binary has --events console;
#      from outside, the SD card as run.sh's install scenario checks it (GPT,
#      filesystems, both slot trees, boot partitions).
#
# Gate and knobs: SYSINSTALL_TEST_QEMU=1 (else it prints SKIP and exits 0; with
# it, anything missing fails), SYSINSTALL_QEMU_TIMEOUT (the boot, default 420 s),
# SYSINSTALL_QEMU_JS_DEADLINE (the tier, default 900 s), SYSINSTALL_QEMU_KEEP=1,
# SYSINSTALL_JUMPSTARTER_VENV (the venv tests/setup.sh makes).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/qemu
# shellcheck source=lib.sh
. "$here/lib.sh"

skip() { echo "SKIP qemu Jumpstarter tier: $*"; exit 0; }
die() { echo "FAIL qemu Jumpstarter tier: $*" >&2; echo "qemu Jumpstarter tier: 0 passed, 1 failed"; exit 1; }
[ "${SYSINSTALL_TEST_QEMU:-}" = 1 ] ||
    skip "off; set SYSINSTALL_TEST_QEMU=1 to drive one install through the Jumpstarter driver (about 4 minutes)"
command -v qemu-system-aarch64 >/dev/null ||
    die "qemu-system-aarch64 is not installed (tests/setup.sh installs qemu-system-arm)"
[ "$(id -u)" = 0 ] || die "needs root (loop mounts for the checks, mknod for the rootfs fixture)"
for t in sgdisk e2fsck mke2fs zstd python3 losetup sha256sum; do
    command -v "$t" >/dev/null || die "needs $t (tests/setup.sh installs it)"
done
js_venv=${SYSINSTALL_JUMPSTARTER_VENV:-${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}/jumpstarter-venv}
for t in python jmp j; do
    [ -x "$js_venv/bin/$t" ] || die "no $js_venv/bin/$t (tests/setup.sh installs Jumpstarter 0.9 there)"
done
"$js_venv/bin/python" -c 'import jumpstarter_driver_pyserial, jumpstarter_driver_power, pytest' ||
    die "the Jumpstarter packages are missing from $js_venv (run tests/setup.sh)"
contrib=$repo/contrib/jumpstarter-driver-sysinstall
export PYTHONPATH=$contrib/src${PYTHONPATH:+:$PYTHONPATH}

timeout_s=${SYSINSTALL_QEMU_TIMEOUT:-420}
deadline_s=${SYSINSTALL_QEMU_JS_DEADLINE:-900}
tnspec=3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1
layout=$repo/layouts/demo.xml
[ -f "$layout" ] || layout=$repo/tests/fixtures/layouts/tx2-mini.xml
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
host_bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/sysinstall
work=$(mktemp -d /tmp/sysinstall-qemu-js.XXXXXX)
qpid=""
cleanup() {
    [ -n "$qpid" ] && { pkill -KILL -P "$qpid" 2>/dev/null || true; kill -KILL "$qpid" 2>/dev/null || true; }
    if [ "${SYSINSTALL_QEMU_KEEP:-}" = 1 ]; then echo "qemu: work directory $work (kept)"; else rm -rf "$work"; fi
}
trap cleanup EXIT
t0=$(now)

# --- 1. unit tests -------------------------------------------------------------
echo "== jumpstarter: unit tests of the driver (fake console)"
if (cd "$contrib" && "$js_venv/bin/python" -m pytest -q -p no:cacheprovider tests) >"$work/pytest.log" 2>&1; then
    ok "driver unit tests: $(tail -n 1 "$work/pytest.log")"
else
    cat "$work/pytest.log"
    fail "driver unit tests"
fi

# --- 2. the guest ----------------------------------------------------------------
echo "== jumpstarter: static binaries, kernel, initramfs, fixtures"
"$repo/scripts/build-static.sh" >"$work/build.log" 2>&1 || { cat "$work/build.log"; die "static build"; }
deb_ensure_arch arm64 || die "cannot add the arm64 architecture to apt"
kroot=$(qemu_kernel arm64) || die "cannot fetch Debian's arm64 kernel (no registry and nothing cached)"
kver=$(ls -1 "$kroot/lib/modules")
"$repo/initramfs/build.sh" --kernel-root "$kroot" --overlay "$here/overlay" \
    --output "$work/initrd.cpio.gz" >"$work/initramfs.log" 2>&1 || { cat "$work/initramfs.log"; die "initramfs"; }
python3 "$repo/tests/fixtures/mkbup.py" --layout "$layout" --tnspec "$tnspec" --decoy-fab B00 --seed v1 \
    -o "$work/bup-v1" --manifest "$work/bup-v1.json" >/dev/null
"$repo/tests/fixtures/mkrootfs.sh" "$work/rootfs-v1.tar.zst" --bup "$work/bup-v1" --tag v1 >/dev/null
disk_bytes=$((4 * 1024 * 1024 * 1024))
"$host_bin" layout "$layout" --format json --disk-sectors $((disk_bytes / 512)) >"$work/layout.json"
truncate -s "$disk_bytes" "$work/sd.img"
truncate -s 4M "$work/boot0.img" "$work/boot1.img"
mkdir -p "$work/payload/installer"
cp "$layout" "$work/payload/installer/layout.xml"
cp "$work/rootfs-v1.tar.zst" "$work/payload/installer/image.tar.zst"
cp "$work/bup-v1" "$work/payload/installer/bl_update_payload"
printf '%s\n' "mkfs-options = -E nodiscard,lazy_itable_init=1,lazy_journal_init=1" \
    >"$work/payload/installer/sysinstall.conf"
mke2fs -q -t ext4 -L INSTALLER -d "$work/payload" "$work/payload.img" 256M
sha256sum "$work/rootfs-v1.tar.zst" >"$work/rootfs.sha256"
timings+=("prepare $(since "$t0")")

# The binary's own help says whether it frames its events (--events console).
events=json
"$host_bin" install --help | grep -Eq '^ *- console:' && events=console
echo "   sysinstall --events $events"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "== jumpstarter: booting the guest, its console on tcp 127.0.0.1:$port"
qemu_run jumpstarter "" 0 -M virt -cpu cortex-a57 -smp 2 -m 1024 \
    -display none -monitor none -serial "tcp:127.0.0.1:$port,server=on,wait=off" -no-reboot -nic none \
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet sysinstall.wait=10" \
    -drive "file=$work/sd.img,format=raw,if=none,id=mmc0" -device sdhci-pci -device sd-card,drive=mmc0 \
    -drive "file=$work/payload.img,format=raw,if=none,id=vd0,readonly=on" \
    -device virtio-blk-pci,drive=vd0,serial=payload \
    -drive "file=$work/boot0.img,format=raw,if=none,id=vd1" -device virtio-blk-pci,drive=vd1,serial=boot0 \
    -drive "file=$work/boot1.img,format=raw,if=none,id=vd2" -device virtio-blk-pci,drive=vd2,serial=boot1 \
    >"$work/qemu_run.log" 2>&1 &
qpid=$!
for _ in $(seq 100); do   # qemu listens once it has started
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
        "$port" 2>/dev/null && break
    sleep 0.2
done

# --- 3. the exporter ---------------------------------------------------------------
cat >"$work/exporter.yaml" <<EOF
apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: qemu-jetson
endpoint: ""
token: ""
export:
  board:
    type: jumpstarter_driver_sysinstall.driver.SysinstallFlasher
    config:
      boot_timeout: 300
      install_timeout: 600
      idle_timeout: 120
      power_mode: "on"
      events: $events
    children:
      serial:
        type: jumpstarter_driver_pyserial.driver.PySerial
        config:
          url: "socket://127.0.0.1:$port"
          check_present: false
      power:
        type: jumpstarter_driver_power.driver.MockPower
EOF

# --- 4. a refused install, then the install, through the driver --------------------------
export PATH=$js_venv/bin:$PATH
# jflash NAME ARGS...: `j board flash ARGS` in Jumpstarter's local mode, its
# stdout/stderr in $work/NAME.out/.err; returns j's exit status. (jmp shell
# --exporter-config of 0.9 exits 0 whatever its command did, so the status
# is written to a file from inside the shell. Jumpstarter logs through rich
# on stdout: wide lines; the result is the last line that is a JSON object.)
jflash() {
    local name=$1
    shift
    rm -f "$work/$name.rc"
    COLUMNS=250 timeout -s KILL "$timeout_s" jmp shell --exporter-config "$work/exporter.yaml" -- \
        sh -c 'j board flash "$@"; echo $? >"$0"' "$work/$name.rc" "$@" \
        >"$work/$name.out" 2>"$work/$name.err" || true
    [ -s "$work/$name.rc" ] || { echo "   $name: jmp shell left no exit status (killed at ${timeout_s}s?)"; return 125; }
    return "$(cat "$work/$name.rc")"
}
# A source that does not exist: sysinstall refuses it in the preflight (exit 3,
# input_missing, the disk untouched); j must exit 3 and print that.
echo "== jumpstarter: j board flash of a missing source (must fail with exit 3)"
t=$(now)
rc=0
jflash missing /installer/missing.tar.zst --retries 2 \
    -O "--layout /installer/layout.xml --bup /installer/bl_update_payload --tnspec $tnspec" || rc=$?
timings+=("jmp-missing $(since "$t")")
grep '^{"exit"' "$work/missing.out" | tail -n 1 >"$work/missing.json" || true
echo "   j board flash exited with status $rc after $(since "$t") s: $(cut -c1-200 "$work/missing.json")"
check "missing source: j board flash exited 3 (sysinstall's status)" test "$rc" = 3
check "missing source: the JSON names input_missing, not retryable, exit 3, and the reason" \
    python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); sys.exit(0 if r["exit"] == 3 and r["code"] == "input_missing" and r["retryable"] is False and "missing.tar.zst" in r["reason"] and r["summary"]["result"] == "fail" else 1)' \
    "$work/missing.json"
check "missing source: no retry of a failure that is not retryable" \
    test "$(grep -c 'running: sysinstall install' "$work/missing.out")" = 1

echo "== jumpstarter: jmp shell --exporter-config ... -- j board flash ..."
t=$(now)
rc=0
jflash flash /installer/image.tar.zst --checksum-file "$work/rootfs.sha256" --retries 0 --after poweroff \
    -O "--layout /installer/layout.xml --bup /installer/bl_update_payload" \
    -O "--config /installer/sysinstall.conf --tnspec $tnspec" || rc=$?
timings+=("jmp-flash $(since "$t")")
grep '^{"exit"' "$work/flash.out" | tail -n 1 >"$work/flash.json" || true
grep -v '^{"exit"' "$work/flash.out" | cat - "$work/flash.err" >"$work/flash.log"
echo "   j board flash exited with status $rc after $(since "$t") s; its log (progress lines left out):"
grep -Ev '^\s*$|: [0-9]+% \(' "$work/flash.log" | tail -n 30 | cut -c1-160 | sed 's/^/     | /'
check "j board flash exited 0" test "$rc" = 0
json_check() {   # DESCRIPTION PYTHON-EXPRESSION over r (the printed result)
    check "$1" python3 -c "import json,sys; r = json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" \
        "$work/flash.json"
}
json_check "result: exit 0" 'r["exit"] == 0'
json_check "result: a pass summary with exit 0 for /dev/mmcblk0" \
    'r["summary"]["kind"] == "summary" and r["summary"]["result"] == "pass" and r["summary"]["exit"] == 0 and r["summary"]["device"] == "/dev/mmcblk0"'
json_check "result: events were parsed (plan, steps, progress: more than 10)" 'r["events"] > 10'
if [ "$events" = console ]; then
    json_check "result: the events came framed (--events console)" 'r["framed"] is True'
fi
check "the guest clock was set from the exporter's (read back within 5 s)" \
    grep -q "board clock set to the exporter's" "$work/flash.log"
check "progress was logged (unpack percentages)" grep -Eq 'unpack .*: [0-9]+% ' "$work/flash.log"

# --- 5. the guest powered off; the disk from outside -----------------------------------
wait "$qpid" || true
qpid=""
timings+=("guest $(sed -n 's/.*after \([0-9.]*\) s.*/\1/p' "$work/qemu_run.log" | tail -n 1)")
# (its console went to the client's socket: qemu exiting by itself, status 0, is the sign)
check "the guest powered off (--after poweroff)" grep -q 'qemu exited with status 0 ' "$work/qemu_run.log"
host_check gpt "$work/sd.img" "$work/layout.json"
host_check fs "$work/sd.img" "$work/layout.json" APP APP_b DATA LOGS EXTRA UDA
host_check tree "$work/sd.img" "$work/layout.json" APP "$work/rootfs-v1.tar.zst"
host_check tree "$work/sd.img" "$work/layout.json" APP_b "$work/rootfs-v1.tar.zst"
host_check boot "$work/layout.json" "$work/boot0.img" "$work/boot1.img" "$work/sd.img" \
    "$work/bup-v1.json" --slots a,b --smd initialize

summary "qemu Jumpstarter tier"
