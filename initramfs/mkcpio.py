#!/usr/bin/env python3
"""Writes a directory tree as a `newc` cpio archive, the format the kernel
unpacks into its initramfs (Documentation/driver-api/early-userspace).

Written here rather than with cpio(1) so that the archive is the same for
everybody: every entry is owned by root, carries one fixed mtime
(SOURCE_DATE_EPOCH), entries are sorted, and device nodes the kernel needs
before devtmpfs is mounted (/dev/console) are added without being root.

usage: mkcpio.py DIR OUT [--node PATH:c|b:MAJOR:MINOR[:MODE]]...
"""

import argparse
import os
import stat
import sys

TRAILER = "TRAILER!!!"


def header(ino, mode, nlink, mtime, size, rmajor, rminor, name):
    name_b = name.encode() + b"\0"
    fields = (
        ino, mode, 0, 0, nlink, mtime, size,
        0, 0,  # dev major/minor of the file system: meaningless here
        rmajor, rminor, len(name_b), 0,  # check: 0 for newc
    )
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    return pad4(head + name_b)


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--node", action="append", default=[],
                    help="PATH:c|b:MAJOR:MINOR[:MODE] device node to add")
    args = ap.parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    entries = []  # (archive name, lstat or None, node spec)
    for root, dirs, files in os.walk(args.dir):
        dirs.sort()
        rel = os.path.relpath(root, args.dir)
        for n in sorted(dirs + files):
            path = os.path.join(root, n)
            name = n if rel == "." else os.path.join(rel, n)
            entries.append((name, os.lstat(path), path))
    for spec in args.node:
        parts = spec.split(":")
        if len(parts) not in (4, 5) or parts[1] not in ("c", "b"):
            sys.exit(f"mkcpio: bad --node {spec!r}")
        kind = stat.S_IFCHR if parts[1] == "c" else stat.S_IFBLK
        perm = int(parts[4], 8) if len(parts) == 5 else 0o600
        entries.append((parts[0].lstrip("/"), (kind | perm, int(parts[2]), int(parts[3])), None))
    entries.sort(key=lambda e: e[0])

    ino = 300000  # any unique numbers; hard links are not preserved (none needed)
    with open(args.out, "wb") as out:
        for name, st, path in entries:
            ino += 1
            if path is None:  # a device node from --node
                mode, major, minor = st
                out.write(header(ino, mode, 1, mtime, 0, major, minor, name))
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                out.write(header(ino, mode, 2, mtime, 0, 0, 0, name))
            elif stat.S_ISLNK(mode):
                target = os.readlink(path).encode()
                out.write(header(ino, mode, 1, mtime, len(target), 0, 0, name))
                out.write(pad4(target))
            elif stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    data = f.read()
                out.write(header(ino, mode, 1, mtime, len(data), 0, 0, name))
                out.write(pad4(data))
            else:
                sys.exit(f"mkcpio: {path}: unsupported file type (use --node)")
        out.write(header(0, 0, 1, 0, 0, 0, 0, TRAILER))


if __name__ == "__main__":
    main()
