# shellcheck shell=sh
# smoke: what the UEFI tier relies on, as the guest sees it.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
fact marker sysinstall-uefi-smoke
fact uname "$(uname -m) $(uname -r)"
[ -d /sys/firmware/efi ] && fact efi yes
grep -q "^efivarfs $EFIVARS efivarfs " /proc/mounts && fact efivarfs mounted
ls "$EFIVARS" >"$R/efivars.names"
fact efivars_count "$(wc -l <"$R/efivars.names")"
fact os_indications_supported "$(var_hex "OsIndicationsSupported-$GLOBAL_GUID")"
[ -d /sys/firmware/efi/esrt ] && fact esrt present
fact nvme0n1_sectors "$(cat /sys/block/nvme0n1/size 2>/dev/null)"
fact nvme0n1_serial "$(tr -d ' ' </sys/block/nvme0n1/device/serial 2>/dev/null)"
fact nvme0n1_lbs "$(cat /sys/block/nvme0n1/queue/logical_block_size 2>/dev/null)"
fact lsattr_os_indications_supported "$(lsattr "$EFIVARS/OsIndicationsSupported-$GLOBAL_GUID" 2>&1 | cut -d' ' -f1)"
fact mkfs_vfat "$(mkfs.vfat --help 2>&1 | head -n 1)"
fact mkfs_vfat_path "$(command -v mkfs.vfat)"
fact chattr_path "$(command -v chattr)"
run version sysinstall --version
run status sysinstall status --format json
