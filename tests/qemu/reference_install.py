#!/usr/bin/env python3
"""A reference install done on the host with the old tools, to prove the
qemu tier's checks (check.py) both pass on a correct install and fail on a
wrong one, independently of sysinstall.

It does what tegra-sysinstall plus tegra-bootloader-update --initialize did:
sgdisk partitions, mkfs.ext4 -L NAME, GNU tar --xattrs --acls into both
slots, then every boot partition erased and written from the payload (BCT in
its three copies) and REF's fresh slot metadata in SMD/SMD_b.

`install` takes the layout JSON of `sysinstall layout --format json`. For
runs without the layout engine, `layout` makes one of the same shape with a
deliberately simple placement (sequential, aligned where the XML asks, the
0x808 partition filling the disk): not NVIDIA's geometry.

usage: reference_install.py layout LAYOUT_XML DISK_SECTORS OUT_JSON
       reference_install.py install LAYOUT_JSON IMG BOOT0 BOOT1 ROOTFS MANIFEST BUP
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SECTOR = 512
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
FILESYSTEMS = ("APP", "APP_b", "DATA", "LOGS", "EXTRA", "UDA")
SMD_INITIALIZED = bytes.fromhex("004e4243030302000f5f6107000e5f62070133" "14fcfe")
BCT_BLOCK, BCT_PAGE = 16384, 512


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def layout(xml_path, disk_sectors, out):
    root = ET.parse(xml_path).getroot()
    boot, user = [], []
    for dev in root.iter("device"):
        kind = dev.get("type")
        if kind == "sdmmc_boot":
            off = 0
            for p in dev.iter("partition"):
                size = int((p.findtext("size") or "0").strip(), 0)
                if p.get("type") == "secondary_gpt":
                    continue
                boot.append({"name": p.get("name"), "offset": off, "size": size})
                off += size
        elif kind == "sdmmc_user":
            cur, number = None, 0
            used = {int(p.get("id")) for p in dev.iter("partition") if p.get("id")}
            for p in dev.iter("partition"):
                t, name = p.get("type"), p.get("name")
                size = int((p.findtext("size") or "0").strip(), 0)
                if t == "protective_master_boot_record":
                    continue
                if t == "primary_gpt":
                    cur = size // SECTOR + 1
                    first_usable = cur
                    continue
                if t == "secondary_gpt":
                    continue
                align = int((p.findtext("align_boundary") or "0").strip() or 0)
                if align:
                    step = align // SECTOR if align >= SECTOR else align
                    cur = -(-cur // step) * step
                if p.get("id"):
                    n = int(p.get("id"))
                else:
                    number += 1
                    while number in used:
                        number += 1
                    n = number
                fills = (p.findtext("allocation_attribute") or "").strip().lower() == "0x808"
                last = disk_sectors - 34 if fills else cur + size // SECTOR - 1
                user.append({"number": n, "name": name, "start_lba": cur, "end_lba": last,
                             "size_sectors": last + 1 - cur, "type_guid": BASIC_DATA,
                             "unique_guid": None, "fills_disk": fills})
                cur = last + 1
    user.sort(key=lambda q: q["number"])
    doc = {"sector_size": SECTOR, "disk_sectors": disk_sectors,
           "first_usable_lba": first_usable, "last_usable_lba": disk_sectors - 34,
           "partitions": user,
           "boot_device": {"kind": "sdmmc_boot", "num_sectors": 16384, "partitions": boot}}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)


def install(layout_json, img, boot0, boot1, rootfs, manifest, bup):
    user = json.load(open(layout_json))
    for q in user["partitions"]:
        q["first_lba"], q["last_lba"] = q["start_lba"], q["end_lba"]
    argv = ["sgdisk", "--zap-all", "--clear", "-a", "1"]
    for q in user["partitions"]:
        argv += [f"--new={q['number']}:{q['first_lba']}:{q['last_lba']}",
                 f"--typecode={q['number']}:{q['type_guid']}",
                 f"--change-name={q['number']}:{q['name']}"]
    sh(*argv, img)
    by_name = {q["name"]: q for q in user["partitions"]}
    dev = sh("losetup", "-f", "--show", img).strip()
    try:
        sh("partx", "-a", dev)
        for name in FILESYSTEMS:
            if name not in by_name:
                continue
            node = f"{dev}p{by_name[name]['number']}"
            sh("mkfs.ext4", "-q", "-F", "-L", name, "-E",
               "nodiscard,lazy_itable_init=1,lazy_journal_init=1", node)
            if name in ("APP", "APP_b"):
                mnt = tempfile.mkdtemp()
                sh("mount", node, mnt)
                try:
                    sh("tar", "--zstd", "--numeric-owner", "--xattrs", "--xattrs-include=*",
                       "--acls", "-xpf", rootfs, "-C", mnt)
                finally:
                    sh("umount", mnt)
                    os.rmdir(mnt)
    finally:
        subprocess.run(["partx", "-d", dev], capture_output=True)
        sh("losetup", "-d", dev)

    # Boot partitions, as --initialize writes them: both slots, erased first.
    blob = open(bup, "rb").read()
    boot = {p["name"]: p for p in user["boot_device"]["partitions"]}
    area = bytearray(open(boot0, "rb").read() + open(boot1, "rb").read())
    entries = {e["partition"]: e for e in json.load(open(manifest))["entries"] if e["selected"]}
    table = blob_entries(blob)
    with open(img, "r+b") as disk:
        for name, e in entries.items():
            data = next(d for (n, d, op, spec) in table
                        if n == name and op == e["op_mode"] and spec == e["spec"])
            if name == "BCT":
                p = boot["BCT"]
                slot = -(-len(data) // BCT_PAGE) * BCT_PAGE
                for off in (slot, BCT_BLOCK, 0):
                    area[p["offset"] + off:p["offset"] + off + len(data)] = data
                continue
            for target in (name, name + "_b"):
                if target in boot:
                    p = boot[target]
                    area[p["offset"]:p["offset"] + p["size"]] = bytes(p["size"])
                    area[p["offset"]:p["offset"] + len(data)] = data
                elif target in by_name:
                    q = by_name[target]
                    disk.seek(q["first_lba"] * SECTOR)
                    disk.write(bytes((q["last_lba"] + 1 - q["first_lba"]) * SECTOR))
                    disk.seek(q["first_lba"] * SECTOR)
                    disk.write(data)
        for smd in ("SMD", "SMD_b"):
            p = boot[smd]
            area[p["offset"]:p["offset"] + len(SMD_INITIALIZED)] = SMD_INITIALIZED
    half = len(area) // 2
    open(boot0, "wb").write(area[:half])
    open(boot1, "wb").write(area[half:])


def blob_entries(blob):
    import struct
    header_size, count = struct.unpack_from("<II", blob, 24)
    out = []
    for i in range(count):
        part, off, length, _ver, op, spec = struct.unpack_from("<40sIIII64s", blob, header_size + 120 * i)
        out.append((part.rstrip(b"\0").decode(), blob[off:off + length], op, spec.rstrip(b"\0").decode()))
    return out


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "layout" and len(sys.argv) == 5:
        layout(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) >= 2 and sys.argv[1] == "install" and len(sys.argv) == 9:
        install(*sys.argv[2:])
    else:
        sys.exit(__doc__)
    shutil.os.sync()


if __name__ == "__main__":
    main()
