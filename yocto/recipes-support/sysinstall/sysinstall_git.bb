SUMMARY = "Re-lay-out and re-install an NVIDIA Jetson eMMC in place, from an initramfs"
SUMMARY:${PN}-initramfs = "The /init of the sysinstall upgrader initramfs"
DESCRIPTION = "sysinstall writes the eMMC GPT from the L4T flash layout, creates \
               the filesystems, unpacks the rootfs into both slots and writes the \
               boot partitions from the bootloader update payload. It is one \
               static binary; the native build converts flash layouts at build \
               time (see sysinstall_layout.bbclass)."
# Set HOMEPAGE and SYSINSTALL_GIT_URI to the repository you build from.
HOMEPAGE ?= "https://example.invalid/sysinstall"
SECTION = "admin"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=29c91c89ee62891477a1476375143bef"

# Where the sources come from: set in your distro or local.conf, and pin
# SRCREV there for a release. The layer lives in the sources' own repository,
# so its default follows the branch head.
PV = "0.1.0+git"
SYSINSTALL_GIT_URI ??= "git://example.invalid/sysinstall.git;protocol=https;branch=main"
SRC_URI = "${SYSINSTALL_GIT_URI}"
# nooelint: oelint.vars.autorev
SRCREV ??= "${AUTOREV}"

require sysinstall-crates.inc

inherit cargo cargo-update-recipe-crates

# One static binary, as in the upgrader initramfs (issue 7): no shared
# library may be missing on the board. musl or glibc, both link statically.
RUSTFLAGS:append:class-target = " -C target-feature=+crt-static"
# Cargo.toml's release profile strips; let OE strip so that -dbg works and
# the already-stripped QA check holds.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# The upgrader's /init and its console files (initramfs/ in the sources).
do_install:append:class-target() {
    install -D -m 0755 ${S}/initramfs/init ${D}/init
    install -D -m 0644 ${S}/initramfs/profile ${D}${sysconfdir}/sysinstall/profile
    install -D -m 0755 ${S}/initramfs/udhcpc.script ${D}${sysconfdir}/sysinstall/udhcpc.script
    install -d ${D}${sysconfdir}/sysinstall/hooks/early.d ${D}${sysconfdir}/sysinstall/hooks/payload.d \
        ${D}${sysconfdir}/sysinstall/hooks/done.d
    printf '%s\n' ${SYSINSTALL_INITRAMFS_MODULES} >${D}${sysconfdir}/sysinstall/modules
}

# Kernel modules the upgrader's /init loads with modprobe, one name each
# (L4T kernels have the eMMC drivers built in: usually empty).
SYSINSTALL_INITRAMFS_MODULES ??= ""

PACKAGES =+ "${PN}-initramfs"
FILES:${PN}-initramfs += "/init ${sysconfdir}/sysinstall"
RDEPENDS:${PN}-initramfs = "${PN} busybox e2fsprogs-e2fsck e2fsprogs-mke2fs e2fsprogs-tune2fs"

BBCLASSEXTEND = "native"
