SUMMARY = "Upgrader initramfs that re-installs a Jetson's eMMC in place"
DESCRIPTION = "A small initramfs (sysinstall, busybox, e2fsprogs, this MACHINE's \
               flash layout) that the board's bootloader starts to re-lay-out \
               and re-install the eMMC: its /init finds the installer payload \
               and leaves a console with what to type, or installs unattended \
               with sysinstall.auto=1. yocto/README.md says how it reaches a board."
SECTION = "images"
LICENSE = "MIT"

# The layout, the boot image and the payload it is delivered in are meta-tegra's.
COMPATIBLE_MACHINE = "(tegra)"

# The USB controller's firmware, so that a payload on a USB disk is found.
SYSINSTALL_INITRAMFS_FIRMWARE ??= "tegra-firmware-xusb"
# More packages for the upgrader (kernel modules, firmware, tools).
SYSINSTALL_INITRAMFS_EXTRA ??= ""
# Kernel modules /init loads with modprobe, one name each (L4T kernels have
# the eMMC drivers built in: usually empty).
SYSINSTALL_INITRAMFS_MODULES ??= ""

# cryptsetup, for layouts with crypt- (LUKS) partitions: "cryptsetup" (its
# recipe is meta-oe's, a layer meta-tegra does not need; about 2.5 MiB with
# OpenSSL's libcrypto). The kernel needs dm-crypt (and the xts template); when
# the MACHINE's kernel builds them as modules, add kernel-module-dm-crypt and
# kernel-module-xts to SYSINSTALL_INITRAMFS_EXTRA and dm-crypt, xts to
# SYSINSTALL_INITRAMFS_MODULES.
SYSINSTALL_INITRAMFS_CRYPTSETUP ??= ""

# e2fsprogs and dosfstools come with sysinstall's RDEPENDS.
PACKAGE_INSTALL = "busybox sysinstall sysinstall-initramfs \
                   ${SYSINSTALL_INITRAMFS_FIRMWARE} ${SYSINSTALL_INITRAMFS_CRYPTSETUP} \
                   ${SYSINSTALL_INITRAMFS_EXTRA}"

IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
IMAGE_ROOTFS_SIZE = "8192"
IMAGE_ROOTFS_EXTRA_SPACE = "0"
# Deployed as sysinstall-upgrader-initramfs-${MACHINE}.cpio.gz (and .cboot,
# .bup-payload), as meta-tegra names its own initramfs images.
IMAGE_NAME_SUFFIX = ""

# gzip: L4T R32's 4.9 kernel cannot unpack a zstd initramfs (RD_ZSTD is 5.9+).
SYSINSTALL_INITRAMFS_FSTYPE ??= "cpio.gz"
# How the upgrader reaches the board (yocto/README.md):
# - L4T R32, T186/T194: cboot boots boot.img (kernel + this initramfs,
#   cpio.gz.cboot) from the kernel partition; the bootloader update payload
#   carrying it (cpio.gz.cboot.bup-payload) is what the running system's
#   tegra-bootloader-update writes into the other slot.
# - Orin: boot.img for the recovery partition (cpio.gz.cboot); the cpio.gz
#   itself for an extlinux.conf entry.
# - T210 (Nano, TX1): U-Boot boots the cpio.gz from an extlinux.conf entry; a
#   boot.img in its kernel partition would replace U-Boot.
def sysinstall_delivery_fstypes(d):
    soc = d.getVar('SOC_FAMILY') or ''
    if soc in ('tegra186', 'tegra194') and 'cpio.gz.cboot.bup-payload' in (d.getVar('IMAGE_TYPES') or '').split():
        return 'cpio.gz.cboot cpio.gz.cboot.bup-payload'
    if soc == 'tegra210':
        return ''
    return 'cpio.gz.cboot'
SYSINSTALL_DELIVERY_FSTYPES ??= "${@sysinstall_delivery_fstypes(d)}"
IMAGE_FSTYPES = "${SYSINSTALL_INITRAMFS_FSTYPE} ${SYSINSTALL_DELIVERY_FSTYPES}"

# The console is the serial port: /dev/console is the last console= of the
# command line, and the machine's KERNEL_ARGS may end with the display's (as
# meta-tegra's own initrd-flash image, drop it from boot.img's command line).
# nooelint: oelint.vars.mispell - meta-tegra's variable (the boot.img command line)
KERNEL_ARGS:remove = "console=tty0"

# /dev/console in the cpio: the kernel gives /init its stdio from it before
# /init mounts devtmpfs (files/sysinstall-device-table.txt).
USE_DEVFS = "0"
# nooelint: oelint.vars.mispell.unknown - OE-Core's (meta/lib/oe/rootfs.py); oelint's list lacks it
IMAGE_DEVICE_TABLES = "files/sysinstall-device-table.txt"

inherit image sysinstall_layout

# The machine's module list, for /init.
sysinstall_upgrader_modules() {
    install -d ${IMAGE_ROOTFS}${sysconfdir}/sysinstall
    printf '%s\n' ${SYSINSTALL_INITRAMFS_MODULES} >${IMAGE_ROOTFS}${sysconfdir}/sysinstall/modules
}
sysinstall_upgrader_modules[doc] = "Writes /etc/sysinstall/modules from SYSINSTALL_INITRAMFS_MODULES"
ROOTFS_POSTPROCESS_COMMAND += "sysinstall_upgrader_modules;"

# The project's own budget for the compressed initramfs (issue 7: it is
# read from eMMC or USB at every upgrade, and cboot copies it twice). The
# bootloaders' limits are wider: R32 cboot takes a ramdisk of up to 64 MiB
# (RAMDISK_MAX_SIZE) and a whole boot.img of up to 80 MiB
# (BOOT_IMAGE_MAX_SIZE); L4TLauncher reads an extlinux INITRD whole into
# memory, with no limit of its own.
SYSINSTALL_INITRAMFS_MAX_BYTES ??= "8388608"
# boot.img (kernel + initramfs) must fit the partition it is written to:
# the kernel partition on R32 (LNXSIZE), recovery on Orin.
SYSINSTALL_BOOTIMG_MAX_BYTES ??= "${@d.getVar('TEGRA_RECOVERY_KERNEL_PART_SIZE' if d.getVar('SOC_FAMILY') == 'tegra234' else 'LNXSIZE')}"

# sysinstall_check_size FILE LIMIT VARIABLE
sysinstall_check_size() {
    size=$(stat -L -c %s "$1")
    bbnote "sysinstall upgrader: $(basename "$1") is $size bytes (limit $2, $3)"
    if [ "$size" -gt "$2" ]; then
        bbfatal "$(basename "$1") is $size bytes, over $3 ($2)"
    fi
}
sysinstall_check_size[doc] = "Fails the build when a file is larger than the limit given"
sysinstall_check_initramfs_size() {
    cpio=${IMGDEPLOYDIR}/${IMAGE_NAME}${IMAGE_NAME_SUFFIX}.${SYSINSTALL_INITRAMFS_FSTYPE}
    [ -f "$cpio" ] || bbfatal "sysinstall upgrader: $cpio was not made"
    sysinstall_check_size "$cpio" "${SYSINSTALL_INITRAMFS_MAX_BYTES}" SYSINSTALL_INITRAMFS_MAX_BYTES
    if [ -f "$cpio.cboot" ]; then
        sysinstall_check_size "$cpio.cboot" "${SYSINSTALL_BOOTIMG_MAX_BYTES}" SYSINSTALL_BOOTIMG_MAX_BYTES
    fi
}
sysinstall_check_initramfs_size[doc] = "Fails the build when the compressed initramfs or its boot.img is over its limit"
IMAGE_POSTPROCESS_COMMAND += "sysinstall_check_initramfs_size;"
