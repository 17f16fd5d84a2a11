# shellcheck shell=sh
# inspect: the boot after: what the firmware left in the variables, as
# efivarfs and `sysinstall status` see it.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
dump_vars >"$R/vars"
run status sysinstall status --format json
