# The smoke scenario (sysinstall.test=smoke): what does not need `install`.
# Every check's outcome goes into /run/results for the host to judge.
if [ "$TEST" = smoke ]; then
    r=/run/results
    {
        echo "marker=sysinstall-smoke"
        echo "uname=$(uname -m) $(uname -r)"
        [ -b /dev/mmcblk0 ] && echo "mmcblk0_sectors=$(cat /sys/block/mmcblk0/size)"
        # sysfs, not blockdev: OE's busybox has no blockdev applet.
        for n in boot0 boot1; do
            [ -b /dev/mmcblk0$n ] || continue
            for b in /sys/block/vd*; do
                [ "$(cat "$b/serial" 2>/dev/null)" = "$n" ] &&
                    echo "mmcblk0${n}_sectors=$(cat "$b/size")"
            done
        done
        echo "payload=$WHERE"
        # Applets this initramfs does not have (links in PATH).
        missing=""
        for a in cttyhack findfs poweroff blockdev; do
            found=""
            for dir in /bin /sbin /usr/bin /usr/sbin; do
                [ -e "$dir/$a" ] && found=1
            done
            [ -n "$found" ] || missing="$missing $a"
        done
        echo "missing=${missing# }"
    } >$r/facts
    sysinstall --version >$r/version.out 2>$r/version.err
    echo $? >$r/version.rc
    sysinstall layout /installer/layout.xml --format json >$r/layout.json 2>$r/layout.err
    echo $? >$r/layout.rc
    # Full paths: this busybox shell would run its own mke2fs applet.
    /sbin/mke2fs -V >$r/mke2fs.version 2>&1
    # A real format of a scratch device with e2fsprogs, then check and read it.
    /sbin/mke2fs -q -F -t ext4 -L SMOKE -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 \
        /dev/mmcblk0boot1 >$r/mke2fs.out 2>&1
    echo $? >$r/mke2fs.rc
    /sbin/e2fsck -fn /dev/mmcblk0boot1 >$r/e2fsck.out 2>&1
    echo $? >$r/e2fsck.rc
    /sbin/tune2fs -l /dev/mmcblk0boot1 >$r/tune2fs.out 2>&1
    echo $? >$r/tune2fs.rc
    cp /bin/run-install $r/run-install
    cp /run/banner $r/banner
    save_results
    poweroff -f
fi
