# shellcheck shell=sh
# install, update, interrupt: the T234 install onto /dev/nvme0n1, its
# arguments from the payload disk (installer/install.args, one line, written
# by uefi.sh; none has a space). The JSON events go to the console as they
# come, one "[event] ..." line each, so the host can cut the power at a given
# one (interrupt); stdout (the PASS:/FAIL: line last), stderr and the exit
# status go to $R/install.{out,err,rc}, the events to $R/events.jsonl.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
dump_vars >"$R/vars-before"
sysinstall status --format json >"$R/before.out" 2>"$R/before.err"
# shellcheck disable=SC2046  # one word per argument, on purpose
set -- $(cat /installer/install.args)
echo "[guest] sysinstall install $*"
{
    sysinstall install "$@" --events json --events-fd 3 3>&1 >"$R/install.out" 2>"$R/install.err"
    echo $? >"$R/install.rc"
} | while IFS= read -r line; do
    echo "$line" >>"$R/events.jsonl"
    echo "[event] $line"
done
echo "[guest] sysinstall install exited with status $(cat "$R/install.rc")"
tail -n 20 "$R/install.err"
tail -n 1 "$R/install.out"
dump_vars >"$R/vars-after"
sysinstall status --format json >"$R/after.out" 2>"$R/after.err"
grep ' /run/sysinstall' /proc/mounts >"$R/mounts-left" || true
list_parts nvme0n1 >"$R/nodes"
