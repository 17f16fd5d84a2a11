SUMMARY = "Upgrader initramfs that re-installs a Jetson's eMMC in place"
DESCRIPTION = "A small initramfs (sysinstall, busybox, e2fsprogs) that cboot or \
               U-Boot boots to re-lay-out and re-install the eMMC: its /init finds \
               the installer payload and leaves a console with what to type, or \
               installs unattended with sysinstall.auto=1."
SECTION = "images"
LICENSE = "MIT"

PACKAGE_INSTALL = "busybox e2fsprogs-e2fsck e2fsprogs-mke2fs e2fsprogs-tune2fs \
                   sysinstall sysinstall-initramfs ${SYSINSTALL_INITRAMFS_EXTRA}"
# More packages for the upgrader (kernel modules, firmware, tools).
SYSINSTALL_INITRAMFS_EXTRA ??= ""

IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
IMAGE_FSTYPES = "${INITRAMFS_FSTYPES}"
IMAGE_NAME_SUFFIX ?= ""
IMAGE_ROOTFS_SIZE = "8192"
IMAGE_ROOTFS_EXTRA_SPACE = "0"

inherit image sysinstall_layout

# cboot reserves a fixed area for the initrd, and the kernel partition holds
# kernel and initrd together: keep the compressed image within budget (issue 7).
SYSINSTALL_INITRAMFS_MAX_BYTES ??= "8388608"

sysinstall_check_initramfs_size() {
    for f in ${IMGDEPLOYDIR}/${IMAGE_NAME}.cpio*; do
        [ -f "$f" ] || continue
        size=$(stat -c %s "$f")
        bbnote "sysinstall upgrader initramfs: $(basename "$f") is $size bytes"
        if [ "$size" -gt "${SYSINSTALL_INITRAMFS_MAX_BYTES}" ]; then
            bbfatal "$(basename "$f") is $size bytes, over SYSINSTALL_INITRAMFS_MAX_BYTES (${SYSINSTALL_INITRAMFS_MAX_BYTES})"
        fi
    done
}
sysinstall_check_initramfs_size[doc] = "Fails the build when the compressed initramfs is over budget"
IMAGE_POSTPROCESS_COMMAND += "sysinstall_check_initramfs_size;"
