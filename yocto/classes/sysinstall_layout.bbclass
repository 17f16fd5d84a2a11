# sysinstall_layout.bbclass: the partition table a release installs, made at
# build time from that release's own flash layout XML.
#
# Runs `sysinstall layout --format csv` (from sysinstall-native) on the flash
# layout the image is built with and installs the result as
# ${SYSINSTALL_PARTITION_TABLE} (/usr/share/tegra-sysinstall/partition_table),
# so the table an installer writes can never drift from the XML the boot
# chain was built for, the classic cause of unbootable boards.
#
# Works in a normal recipe (the table goes into ${PN} by do_install) and in an
# image recipe (the table is put into the rootfs by ROOTFS_POSTPROCESS_COMMAND).
#
# Variables:
#   SYSINSTALL_LAYOUT_XML       the flash layout (default: meta-tegra's staged
#                               ${PARTITION_LAYOUT_TEMPLATE}); empty = do nothing
#   SYSINSTALL_LAYOUT_DEPENDS   the recipe that stages it (default tegra-bootfiles)
#   SYSINSTALL_LAYOUT_SET       NAME=VALUE placeholder values, e.g.
#                               "APPSIZE=${ROOTFSPART_SIZE}"
#   SYSINSTALL_LAYOUT_DISK_SECTORS  disk size in sectors (default: the XML's num_sectors)

SYSINSTALL_LAYOUT_XML ??= "${STAGING_DATADIR}/tegraflash/${PARTITION_LAYOUT_TEMPLATE}"
SYSINSTALL_LAYOUT_DEPENDS ??= "tegra-bootfiles"
SYSINSTALL_LAYOUT_SET ??= ""
SYSINSTALL_LAYOUT_DISK_SECTORS ??= ""
SYSINSTALL_PARTITION_TABLE ?= "${datadir}/tegra-sysinstall/partition_table"

DEPENDS:append = " sysinstall-native ${SYSINSTALL_LAYOUT_DEPENDS}"

# Writes the CSV to $1. Fails the build, naming the XML, when sysinstall
# rejects the layout.
sysinstall_layout_csv() {
    if [ -z "${SYSINSTALL_LAYOUT_XML}" ]; then
        bbnote "SYSINSTALL_LAYOUT_XML is empty: no partition table"
        return 0
    fi
    if [ ! -f "${SYSINSTALL_LAYOUT_XML}" ]; then
        bbfatal "sysinstall-layout: ${SYSINSTALL_LAYOUT_XML} does not exist (set SYSINSTALL_LAYOUT_XML)"
    fi
    set --
    for s in ${SYSINSTALL_LAYOUT_SET}; do
        set -- "$@" --set "$s"
    done
    if [ -n "${SYSINSTALL_LAYOUT_DISK_SECTORS}" ]; then
        set -- "$@" --disk-sectors "${SYSINSTALL_LAYOUT_DISK_SECTORS}"
    fi
    sysinstall layout "${SYSINSTALL_LAYOUT_XML}" "$@" --format csv >"$1.tmp" ||
        bbfatal "sysinstall-layout: sysinstall layout ${SYSINSTALL_LAYOUT_XML} failed"
    mv "$1.tmp" "$1"
}
sysinstall_layout_csv[doc] = "Writes the partition table CSV for SYSINSTALL_LAYOUT_XML to the file given"

do_sysinstall_layout() {
    sysinstall_layout_csv "${B}/partition_table"
}
do_sysinstall_layout[doc] = "Converts the flash layout into the sysinstall partition table"
do_sysinstall_layout[vardeps] += "SYSINSTALL_LAYOUT_XML SYSINSTALL_LAYOUT_SET SYSINSTALL_LAYOUT_DISK_SECTORS"
do_sysinstall_layout[file-checksums] += "${@'${SYSINSTALL_LAYOUT_XML}:True' if d.getVar('SYSINSTALL_LAYOUT_XML') else ''}"

# The table goes into a package from an ordinary recipe, into the rootfs from
# an image recipe: which one is only known once the recipe is parsed.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    if bb.data.inherits_class('image', d):
        d.appendVar('ROOTFS_POSTPROCESS_COMMAND', ' sysinstall_layout_rootfs;')
    else:
        bb.build.addtask('do_sysinstall_layout', 'do_install', 'do_compile', d)
        d.appendVar('FILES:' + d.getVar('PN'), ' ' + d.getVar('SYSINSTALL_PARTITION_TABLE'))
}

do_install:append() {
    if [ -f "${B}/partition_table" ]; then
        install -D -m 0644 "${B}/partition_table" "${D}${SYSINSTALL_PARTITION_TABLE}"
    fi
}

sysinstall_layout_rootfs() {
    sysinstall_layout_csv "${WORKDIR}/sysinstall-partition_table"
    if [ -f "${WORKDIR}/sysinstall-partition_table" ]; then
        install -D -m 0644 "${WORKDIR}/sysinstall-partition_table" \
            "${IMAGE_ROOTFS}${SYSINSTALL_PARTITION_TABLE}"
    fi
}
sysinstall_layout_rootfs[doc] = "Installs the partition table into the image rootfs"
