# shellcheck shell=sh
# stage: `sysinstall status --stage` against the seeded Jetson-like store,
# with an ESP made by mkfs.vfat as sysinstall makes it (src/sys/vfat.rs).
# shellcheck source=lib.sh
. /installer/guest-lib.sh
esp=$(part_by_name nvme0n1 esp) || { echo "no partition named esp on nvme0n1"; exit 1; }
fact esp "$esp"
run mkfs mkfs.vfat -F 32 -I "$esp"
dump_vars >"$R/vars-before"
run before sysinstall status --format json
run stage sysinstall status --stage /installer/tegra-bl.cap --esp "$esp" --format json
dump_vars >"$R/vars-staged"
# The same command again: everything is already so.
run stage2 sysinstall status --stage /installer/tegra-bl.cap --esp "$esp" --format json
run after sysinstall status --format json
dump_vars >"$R/vars-after"
fact os_indications_lsattr "$(lsattr "$EFIVARS/OsIndications-$GLOBAL_GUID" 2>&1 | cut -d' ' -f1)"
grep ' /run/sysinstall' /proc/mounts >"$R/mounts-left" || true
