# shellcheck shell=sh disable=SC2154  # sourced by /init: $TEST and save_results are its
# sysinstall.test=script: run the scenario's guest script from the payload
# disk (installer/guest-test.sh, put there by the host for this boot; the
# UEFI tier's scenarios work this way, see tests/qemu/guest/), keep its
# output and exit status with the results, power off. Its output goes to
# the console too, so the host can cut the power at a given line.
if [ "$TEST" = script ]; then
    if [ -f /installer/guest-test.sh ]; then
        echo "[test-rig] running /installer/guest-test.sh"
        {
            RESULTS=/run/results sh /installer/guest-test.sh 2>&1
            echo $? >/run/results/guest.rc
        } | tee /run/results/guest.log
        echo "[test-rig] guest script exited with status $(cat /run/results/guest.rc)"
    else
        echo "[test-rig] no /installer/guest-test.sh on the payload disk" |
            tee /run/results/guest.log
    fi
    save_results
    poweroff -f
fi
