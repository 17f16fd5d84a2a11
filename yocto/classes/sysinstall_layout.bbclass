# sysinstall_layout.bbclass: puts into an image the flash layout an install
# writes, made at build time by meta-tegra's own flash configuration step.
#
# meta-tegra's tegraflash_create_flash_config (image_types_tegra.bbclass,
# which every image of a tegra MACHINE inherits) turns the L4T layout
# template into the layout its tegraflash package and its bootloader update
# payload are made from: partition sizes (APPSIZE from ROOTFSPART_SIZE,
# LNXSIZE, RECSIZE, ...) and device sizes (INT_NUM_SECTORS, ...) come from
# the machine configuration. This class runs that same function in the image
# being built, checks the result with `sysinstall layout` (a layout sysinstall
# rejects fails the build, naming the partition), and installs
#   ${SYSINSTALL_LAYOUT_FILE}      the substituted XML (sysinstall's default layout)
#   ${SYSINSTALL_PARTITION_TABLE}  the same as a tegra-sysinstall partition_table
# so the table an installer writes cannot drift from the layout the boot
# chain of this MACHINE is built with.
#
# For image recipes only (the upgrader initramfs inherits it). An image that
# overrides a layout variable (ROOTFSPART_SIZE:pn-my-image, ...) for itself
# must give the upgrader the same override, or hand its layout to the
# installer (installer/layout.xml on the payload wins over this one).
#
# Variables:
#   SYSINSTALL_LAYOUT_TEMPLATE   the template meta-tegra's step substitutes;
#                                empty (default): its own choice, i.e.
#                                ${PARTITION_LAYOUT_TEMPLATE} on L4T R32,
#                                internal-flash.xml from R36 on
#   SYSINSTALL_LAYOUT_XML        a finished layout used as it is instead
#                                (no substitution); empty by default
#   SYSINSTALL_LAYOUT_SET        NAME=VALUE values for placeholders that are
#                                still left, if any
#   SYSINSTALL_LAYOUT_DISK_SECTORS  disk size in sectors for the table
#                                (default: the layout's num_sectors)
#   SYSINSTALL_LAYOUT_DEPENDS    recipe that stages the templates (tegra-bootfiles)

SYSINSTALL_LAYOUT_TEMPLATE ??= ""
SYSINSTALL_LAYOUT_XML ??= ""
SYSINSTALL_LAYOUT_SET ??= ""
SYSINSTALL_LAYOUT_DISK_SECTORS ??= ""
SYSINSTALL_LAYOUT_DEPENDS ??= "tegra-bootfiles"
SYSINSTALL_LAYOUT_FILE ?= "${datadir}/sysinstall/layout.xml"
SYSINSTALL_PARTITION_TABLE ?= "${datadir}/tegra-sysinstall/partition_table"

DEPENDS:append = " sysinstall-native ${SYSINSTALL_LAYOUT_DEPENDS}"

# meta-tegra's function writes DIR/flash.xml.in up to its kirkstone branches
# (L4T R32, R35) and takes the output file itself from scarthgap (R36) on.
SYSINSTALL_TEGRAFLASH_CONFIG_TAKES_DIR = "${@'1' if 'destdir' in (d.getVar('tegraflash_create_flash_config', False) or '') else '0'}"

# Writes DIR/layout.xml and DIR/partition_table.
sysinstall_layout_make() {
    dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ -n "${SYSINSTALL_LAYOUT_XML}" ]; then
        [ -f "${SYSINSTALL_LAYOUT_XML}" ] ||
            bbfatal "sysinstall_layout: SYSINSTALL_LAYOUT_XML ${SYSINSTALL_LAYOUT_XML} does not exist"
        cp "${SYSINSTALL_LAYOUT_XML}" "$dir/layout.xml"
    elif [ "${SYSINSTALL_TEGRAFLASH_CONFIG_TAKES_DIR}" = 1 ]; then
        (cd "$dir" && tegraflash_create_flash_config "$dir" "${LNXFILE}" ${SYSINSTALL_LAYOUT_TEMPLATE})
        mv "$dir/flash.xml.in" "$dir/layout.xml"
    else
        (cd "$dir" && tegraflash_create_flash_config "$dir/layout.xml" "${LNXFILE}" ${SYSINSTALL_LAYOUT_TEMPLATE})
    fi
    [ -s "$dir/layout.xml" ] || bbfatal "sysinstall_layout: meta-tegra's tegraflash_create_flash_config wrote no layout"
    set --
    for s in ${SYSINSTALL_LAYOUT_SET}; do
        set -- "$@" --set "$s"
    done
    if [ -n "${SYSINSTALL_LAYOUT_DISK_SECTORS}" ]; then
        set -- "$@" --disk-sectors "${SYSINSTALL_LAYOUT_DISK_SECTORS}"
    fi
    sysinstall layout "$dir/layout.xml" "$@" --format csv >"$dir/partition_table" ||
        bbfatal "sysinstall_layout: sysinstall rejects the flash layout of ${MACHINE} (message above)"
}
sysinstall_layout_make[doc] = "Writes meta-tegra's substituted flash layout and its partition table into a directory"

sysinstall_layout_rootfs() {
    sysinstall_layout_make "${WORKDIR}/sysinstall-layout"
    install -D -m 0644 "${WORKDIR}/sysinstall-layout/layout.xml" "${IMAGE_ROOTFS}${SYSINSTALL_LAYOUT_FILE}"
    install -D -m 0644 "${WORKDIR}/sysinstall-layout/partition_table" "${IMAGE_ROOTFS}${SYSINSTALL_PARTITION_TABLE}"
}
sysinstall_layout_rootfs[doc] = "Installs the flash layout and its partition table into the image rootfs"
ROOTFS_POSTPROCESS_COMMAND += "sysinstall_layout_rootfs;"

# nooelint: oelint.task.noanonpython
python __anonymous() {
    if not bb.data.inherits_class('image', d):
        bb.fatal('sysinstall_layout: %s is not an image; the class is for image recipes' % d.getVar('PN'))
    if not d.getVar('SYSINSTALL_LAYOUT_XML') and not bb.data.inherits_class('image_types_tegra', d):
        raise bb.parse.SkipRecipe('sysinstall_layout: needs a tegra MACHINE (meta-tegra image_types_tegra) '
                                  'or SYSINSTALL_LAYOUT_XML')
}
