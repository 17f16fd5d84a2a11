# qemu test rig (sourced by /init once the disks are there).
#
# qemu 7.2 cannot emulate eMMC boot partitions (its sd-card has none, and its
# emmc device is not user-creatable), so the harness attaches two small
# virtio disks with serial numbers boot0/boot1 and we make the device nodes
# /dev/mmcblk0boot0 and /dev/mmcblk0boot1 point at them. A virtio disk with
# serial "results" receives a tar of what the guest wants the host to see.
RESULTS_DEV=""
for b in /sys/block/vd*; do
    [ -e "$b" ] || continue
    serial=$(cat "$b/serial" 2>/dev/null)
    case "$serial" in
        boot0|boot1)
            node=/dev/mmcblk0$serial
            rm -f "$node"
            mknod "$node" b "$(cut -d: -f1 "$b/dev")" "$(cut -d: -f2 "$b/dev")"
            echo "[test-rig] $node -> /dev/${b##*/} (stand-in: qemu has no eMMC boot partitions)"
            ;;
        results) RESULTS_DEV=/dev/${b##*/} ;;
    esac
done
mkdir -p /run/results

TEST=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in sysinstall.test=*) TEST=${arg#*=} ;; esac
done

# Writes /run/results as a tar onto the results disk (the host untars it).
save_results() {
    [ -n "$RESULTS_DEV" ] || { echo "[test-rig] no results disk"; return 1; }
    cp /proc/partitions /run/results/partitions
    dmesg >/run/results/dmesg
    tar -cf "$RESULTS_DEV" -C /run/results . && sync
    echo "[test-rig] results saved to $RESULTS_DEV"
}
