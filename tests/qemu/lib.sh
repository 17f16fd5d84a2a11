# shellcheck shell=bash disable=SC2154  # $repo, $here, $work, $t0 and the limits are the tier's
# What the qemu tiers share (tests/qemu/run.sh, the SD card tier, and
# tests/qemu/uefi.sh, the UEFI/NVMe tier): the Debian kernel and firmware,
# the check bookkeeping, and one bounded qemu run. Sourced; the tier sets
# $repo, $here, $work, $t0 (its start, from `now`), $timeout_s (per boot)
# and $deadline_s (the whole tier) before booting.

# shellcheck source=../../scripts/debs.sh
. "$repo/scripts/debs.sh"

# Fetches and unpacks Debian's current arm64 kernel into the cache (keyed by
# package name and version) and prints the unpacked root; depmod is run
# because the .deb ships no modules.dep.
qemu_kernel() {
    local arch=$1 meta pkg version root deb
    meta="linux-image-$arch:$arch"
    pkg=$(apt-cache depends "$meta" 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ { sub(/:.*/, "", $2); print $2; exit }')
    if [ -z "$pkg" ]; then   # offline: the newest cached kernel
        # shellcheck disable=SC2012  # names without spaces, sorted by version
        root=$(ls -1d "$debs_cache"/kernel/linux-image-*-"$arch"_* 2>/dev/null | sort -V | tail -n 1)
        [ -n "$root" ] && { echo "$root"; return 0; }
        echo "qemu: cannot resolve $meta (apt lists for $arch missing?) and no kernel cached" >&2
        return 1
    fi
    version=$(deb_version "$pkg:$arch")
    root=$debs_cache/kernel/${pkg}_${version//:/%3a}
    if [ ! -f "$root/.complete" ]; then
        deb=$(deb_fetch "$pkg:$arch") || return 1
        rm -rf "$root"
        mkdir -p "$root"
        dpkg-deb -x "$deb" "$root"
        depmod -b "$root" "${pkg#linux-image-}"
        touch "$root/.complete"
    fi
    echo "$root"
}

# Prints the directory of Debian's AAVMF (package qemu-efi-aarch64, which
# tests/setup.sh installs: EDK2's ArmVirtQemu for -M virt), the one holding
# AAVMF_CODE.fd and AAVMF_VARS.fd; fails when it is not installed.
qemu_firmware() {
    local dir=${SYSINSTALL_AAVMF_DIR:-/usr/share/AAVMF}
    if [ -s "$dir/AAVMF_CODE.fd" ] && [ -s "$dir/AAVMF_VARS.fd" ]; then
        echo "$dir"
    else
        echo "qemu: no $dir/AAVMF_{CODE,VARS}.fd (tests/setup.sh installs qemu-efi-aarch64)" >&2
        return 1
    fi
}

# --- bookkeeping ---------------------------------------------------------------
passed=0 failed=0
timings=()
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ok() { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() {   # DESCRIPTION COMMAND...: one check from a command's status
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
host_check() {   # check.py SUBCOMMAND ARGS...: its ok/FAIL lines count
    local out rc=0
    out=$(python3 "$here/check.py" "$@" 2>&1) || rc=$?
    echo "$out"
    passed=$((passed + $(grep -c '^ok - ' <<<"$out" || true)))
    failed=$((failed + $(grep -c '^FAIL - ' <<<"$out" || true)))
    if ((rc != 0)) && ! grep -q '^FAIL - ' <<<"$out"; then
        fail "check.py $1 crashed (status $rc)"
    fi
}
# The last lines of a tier: timings, the count, and its exit status.
summary() {   # TIER-NAME
    echo "== $1 timings (seconds, wall)"
    local entry
    # shellcheck disable=SC2086  # "name seconds": two words on purpose
    for entry in "${timings[@]}"; do printf '   %-24s %8s\n' ${entry}; done
    printf '   %-24s %8s\n' total "$(since "$t0")"
    echo "$1: $passed passed, $failed failed"
    ((failed == 0))
}

# --- one qemu run ----------------------------------------------------------------
# qemu_run NAME KILL_REGEX KILL_DELAY QEMU-ARGUMENTS...
# Runs qemu-system-aarch64 with the caller's machine, firmware, kernel and
# disks, under a time limit: the per-boot timeout, cut short by what is left
# of the tier's deadline (no boot starts with less than 30 s left: status 3).
# The results disk $work/results.img (16 MiB, a tar the guest writes) is
# emptied first and unpacked afterwards into $work/NAME.results; the console
# goes to $work/NAME.console. With a KILL_REGEX, qemu is SIGKILLed (a power
# cut) KILL_DELAY seconds after the console matches it; status 2 when the
# guest stopped before that.
qemu_run() {
    local name=$1 kill_re=$2 kill_delay=$3 t pid rc=0 waited=0 limit
    shift 3
    limit=$(awk -v s="$t0" -v n="$(now)" -v d="$deadline_s" -v b="$timeout_s" \
        'BEGIN { r = int(d - (n - s)); print (r < b ? r : b) }')
    if ((limit < 30)); then
        fail "$name: not booted, the tier's deadline of ${deadline_s}s is reached"
        return 3
    fi
    truncate -s 0 "$work/results.img" && truncate -s 16M "$work/results.img"
    t=$(now)
    timeout -s KILL "$limit" qemu-system-aarch64 "$@" </dev/null >"$work/$name.console" 2>&1 &
    pid=$!
    if [ -n "$kill_re" ]; then
        until grep -Eq "$kill_re" "$work/$name.console" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            sleep "$kill_delay"
            # $pid is timeout(1); qemu is its child and must die too, or it
            # keeps the disk images locked for the next boot.
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null && echo "   $name: power cut (qemu killed) $(since "$t") s after boot"
            waited=1
        fi
    fi
    # (wait's stderr: not the shell's "Killed" line after a power cut)
    { wait "$pid"; } 2>/dev/null || rc=$?
    timings+=("$name $(since "$t")")
    echo "   $name: qemu exited with status $rc after $(since "$t") s (console: $work/$name.console)"
    if ((rc == 137)) && ((waited == 0)); then
        echo "   $name: killed at its time limit of ${limit}s; the console's last lines:"
        tail -n 15 "$work/$name.console" | sed 's/^/     | /'
    fi
    rm -rf "$work/$name.results" && mkdir -p "$work/$name.results"
    tar -xf "$work/results.img" -C "$work/$name.results" 2>/dev/null || true
    if [ -n "$kill_re" ] && ((waited == 0)); then
        return 2   # the kill point never came
    fi
    return 0
}
