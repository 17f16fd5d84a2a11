# shellcheck shell=sh
# Helpers of the guest scripts (busybox sh in the upgrader initramfs). The
# host puts this file on the payload disk as /installer/guest-lib.sh and the
# scenario's script as /installer/guest-test.sh, which the test overlay's
# hook runs (overlay/etc/sysinstall/hooks/payload.d/60-guest-script.sh);
# everything under $R goes back to the host on the results disk.
R=${RESULTS:-/run/results}
EFIVARS=/sys/firmware/efi/efivars
# shellcheck disable=SC2034  # for the scripts that source this file
NV_GUID=781e084c-a330-417c-b678-38e696380cb9      # gNVIDIAPublicVariableGuid
# shellcheck disable=SC2034
GLOBAL_GUID=8be4df61-93ca-11d2-aa0d-00e098032b8c  # EFI_GLOBAL_VARIABLE

fact() {   # KEY VALUE: one line of $R/facts
    echo "$1=$2" >>"$R/facts"
}

# run NAME COMMAND...: stdout to $R/NAME.out, stderr to $R/NAME.err (and the
# console), the exit status to $R/NAME.rc.
run() {
    _n=$1
    shift
    echo "[guest] $*"
    "$@" >"$R/$_n.out" 2>"$R/$_n.err"
    echo $? >"$R/$_n.rc"
    cat "$R/$_n.err"
}

# The node of DISK's partition named NAME (from the kernel's PARTNAME).
part_by_name() {   # DISK NAME
    for _u in /sys/class/block/"$1"p*/uevent; do
        if grep -qx "PARTNAME=$2" "$_u" 2>/dev/null; then
            _d=${_u%/uevent}
            echo "/dev/${_d##*/}"
            return 0
        fi
    done
    return 1
}

# The partition nodes of DISK as the kernel sees them, one line each:
# "NODE PARTNAME=x start=N size=N" (check.py nodes reads it).
list_parts() {   # DISK
    for _s in /sys/class/block/"$1"p*; do
        [ -e "$_s" ] || continue
        echo "${_s##*/} $(grep '^PARTNAME=' "$_s/uevent") start=$(cat "$_s/start") size=$(cat "$_s/size")"
    done
}

# A variable's efivarfs file as hex ("" when absent).
var_hex() {   # NAME-GUID
    [ -e "$EFIVARS/$1" ] && hexdump -ve '1/1 "%02x"' "$EFIVARS/$1"
}

# Every variable: "NAME-GUID HEX" lines.
dump_vars() {
    for _f in "$EFIVARS"/*; do
        [ -e "$_f" ] || continue
        echo "${_f##*/} $(hexdump -ve '1/1 "%02x"' "$_f")"
    done
}
