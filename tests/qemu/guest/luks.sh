# shellcheck shell=sh
# luks: the crypt- layout (tests/fixtures/layouts/demo-luks.xml) onto the
# blank SD card. Four runs of run-install (the payload's own command):
#   nokey   no key: refused (exit 3, key_missing), the disk's head unchanged
#   install --luks-key-file: passes
#   wrong   --mode update with another key: refused before anything is
#           written (key_rejected: it does not open the running slot's container)
# then each container is opened here with the key (and not with the other
# one), its filesystem checked (e2fsck -fn) and labelled, the slot's fixture
# file read. Results in $R for the host.
# shellcheck source=lib.sh
. /installer/guest-lib.sh
head_sum() { dd if=/dev/mmcblk0 bs=1M count=64 2>/dev/null | md5sum | cut -d' ' -f1; }

fact head_before "$(head_sum)"
run nokey run-install --yes --events json
fact head_nokey "$(head_sum)"

run install run-install --yes --luks-key-file /installer/luks.key
tail -n 3 "$R/install.out"

for name in crypt-APP crypt-APP_b crypt-DATA; do
    dev=$(part_by_name mmcblk0 "$name") || { fact "$name" missing; continue; }
    fact "$name.dev" "$dev"
    cryptsetup isLuks --type luks2 "$dev" && fact "$name.luks2" yes
    cryptsetup luksDump "$dev" >"$R/$name.dump" 2>&1
    cryptsetup open --test-passphrase --key-file /installer/wrong.key "$dev" 2>/dev/null
    fact "$name.wrong_key_rc" $?
    run "$name.open" cryptsetup open --key-file /installer/luks.key "$dev" check
    run "$name.fsck" /sbin/e2fsck -fn /dev/mapper/check
    /sbin/tune2fs -l /dev/mapper/check >"$R/$name.tune2fs" 2>&1
    case "$name" in
        crypt-APP|crypt-APP_b)
            mkdir -p /mnt/check
            if mount -o ro -t ext4 /dev/mapper/check /mnt/check; then
                cat /mnt/check/etc/sysinstall-fixture >"$R/$name.fixture"
                umount /mnt/check
            fi
            ;;
    esac
    cryptsetup close check
done
# Nothing of the install is left open or mounted.
ls /dev/mapper >"$R/mapper-left" 2>&1
grep ' /run/sysinstall' /proc/mounts >"$R/mounts-left" || true

fact head_before_wrong "$(head_sum)"
run wrong run-install --yes --mode update --events json --luks-key-file /installer/wrong.key
fact head_wrong "$(head_sum)"
