#!/usr/bin/env python3
"""Host-side checks of a disk image the qemu guest installed, from outside:
independent tools (sgdisk, e2fsck, dumpe2fs, the kernel's ext4 through a
read-only loop mount) against the inputs (layout JSON, tarball, BUP manifest).

Each subcommand prints one "ok - ..." or "FAIL - ..." line per check and
exits 1 if any failed.

  gpt   IMG LAYOUT_JSON           GPT equal to the layout; sgdisk -v clean
  fs    IMG LAYOUT_JSON NAME...   e2fsck -fn clean and label == NAME
  tree  IMG LAYOUT_JSON NAME TARBALL
                                  the filesystem in NAME holds exactly the tarball
                                  (and sysinstall's install report, a pass)
  boot  LAYOUT_JSON BOOT0 BOOT1 IMG MANIFEST --slots a,b [--old MANIFEST --changed-set ...]
                                  boot partitions equal the payload
  hashes IMG LAYOUT_JSON BOOT0 BOOT1 OUT_JSON
                                  SHA-256 of every partition (for before/after)
  changed BEFORE_JSON AFTER_JSON --allow REGEX --must NAME...
                                  which partitions changed between two runs
  nodes LISTING LAYOUT_JSON --disk NAME
                                  the guest kernel's partition nodes (a listing of
                                  "NODE PARTNAME=x start=N size=N" lines) equal the layout
  esp   IMG LAYOUT_JSON PART --file PATH=SOURCE... [--gone PATH...]
                                  the FAT filesystem in PART (mtools, fsck.fat -n)
                                  holds each PATH byte for byte as SOURCE
  kernel IMG LAYOUT_JSON MANIFEST --slots a,b [--old MANIFEST]
                                  A_/B_kernel(-dtb) hold a T234 kernel payload's
                                  entries (mkbup.py --t234 kernel manifest)
  frames CONSOLE_LOG --exit N [--copy FILE]
                                  `--events console` frames on a console log: the
                                  last intact one is a summary with exit N, in
                                  order; FILE (the upgrader's /run/sysinstall/summary)
                                  holds that same frame
  vars  DUMP_JSON [--value NAME=HEX] [--absent NAME] [--same OTHER_JSON NAME...]
                                  a UEFI variable store dumped by `virt-fw-vars
                                  --output-json`: HEX is the efivarfs form, the
                                  4-byte attributes then the data
"""

import argparse
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
import zlib

SECTOR = 512
failures = 0


def report(ok, what, detail=""):
    global failures
    if ok:
        print(f"ok - {what}")
    else:
        failures += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""))


def run(*argv, check=False):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


# --- layout JSON -------------------------------------------------------------

def load_layout(path):
    """The user table and boot area from `sysinstall layout --format json`:
    {"sector_size", "disk_sectors", "first_usable_lba", "last_usable_lba",
     "partitions": [{"number", "name", "start_lba", "end_lba", "type_guid",
     "unique_guid", ...}], "boot_device": {"partitions": [{"name", "offset",
     "size"}]}} (src/layout/render.rs). Partitions get first_lba/last_lba keys."""
    try:
        with open(path) as f:
            doc = json.load(f)
        for p in doc["partitions"]:
            p["first_lba"], p["last_lba"] = p["start_lba"], p["end_lba"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        report(False, f"layout JSON {path} is usable", f"{type(e).__name__}: {e} "
               "(is `sysinstall layout --format json` implemented?)")
        sys.exit(1)
    return doc, doc.get("boot_device")


def user_parts(user):
    return {p["name"]: p for p in user["partitions"]}


def guid_text(g):
    return str(g).upper() if g else None


# --- gpt ---------------------------------------------------------------------

def cmd_gpt(a):
    user, _ = load_layout(a.layout)
    v = run("sgdisk", "-v", a.img)
    report("No problems found" in v.stdout, "sgdisk -v: no problems", v.stdout.strip()[-300:])
    p = run("sgdisk", "-p", a.img)
    m = re.search(r"First usable sector is (\d+), last usable sector is (\d+)", p.stdout)
    if m:
        report(int(m.group(1)) == user["first_usable_lba"],
               f"first usable LBA {m.group(1)} == {user['first_usable_lba']}")
        report(int(m.group(2)) == user["last_usable_lba"],
               f"last usable LBA {m.group(2)} == {user['last_usable_lba']}")
    else:
        report(False, "sgdisk -p prints the usable range", p.stdout[-300:])
    m = re.search(r"Disk .*: (\d+) sectors", p.stdout)
    if m and "disk_sectors" in user:
        report(int(m.group(1)) == user["disk_sectors"],
               f"disk size {m.group(1)} sectors == layout {user['disk_sectors']}")
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s", p.stdout, re.M)
    numbers = sorted(int(r[0]) for r in rows)
    want = sorted(q["number"] for q in user["partitions"])
    report(numbers == want, f"{len(want)} partitions with the layout's numbers",
           f"disk has {numbers}, layout {want}")
    guids = set()
    for q in user["partitions"]:
        info = run("sgdisk", "-i", str(q["number"]), a.img).stdout
        got = {
            "first": re.search(r"First sector: (\d+)", info),
            "last": re.search(r"Last sector: (\d+)", info),
            "name": re.search(r"Partition name: '(.*)'", info),
            "type": re.search(r"Partition GUID code: (\S+)", info),
            "unique": re.search(r"Partition unique GUID: (\S+)", info),
        }
        if not all(got.values()):
            report(False, f"partition {q['number']} ({q['name']}) exists", info.strip()[-200:])
            continue
        first, last = int(got["first"].group(1)), int(got["last"].group(1))
        name, typ, unique = got["name"].group(1), got["type"].group(1), got["unique"].group(1)
        errs = []
        if (first, last) != (q["first_lba"], q["last_lba"]):
            errs.append(f"sectors {first}-{last}, layout {q['first_lba']}-{q['last_lba']}")
        if name != q["name"]:
            errs.append(f"name {name!r}")
        if guid_text(q.get("type_guid")) and typ.upper() != guid_text(q["type_guid"]):
            errs.append(f"type {typ}, layout {q['type_guid']}")
        if guid_text(q.get("unique_guid")) and unique.upper() != guid_text(q["unique_guid"]):
            errs.append(f"unique GUID {unique}, layout {q['unique_guid']}")
        if unique in guids:
            errs.append(f"unique GUID {unique} used twice")
        guids.add(unique)
        report(not errs, f"partition {q['number']} {q['name']} {first}-{last}", "; ".join(errs))
    return failures


# --- filesystems ---------------------------------------------------------------

def part_offset(user, name):
    q = user_parts(user).get(name)
    if q is None:
        return None
    return q["first_lba"] * SECTOR


def cmd_fs(a):
    user, _ = load_layout(a.layout)
    for name in a.names:
        off = part_offset(user, name)
        if off is None:
            print(f"ok - {name}: not in this layout, nothing to check")
            continue
        spec = f"{a.img}?offset={off}"
        f = run("e2fsck", "-fn", spec)
        report(f.returncode == 0, f"{name}: e2fsck -fn clean", (f.stdout + f.stderr).strip()[-400:])
        d = run("dumpe2fs", "-h", spec)
        m = re.search(r"Filesystem volume name:\s+(\S*)", d.stdout)
        label = m.group(1) if m else None
        report(label == name, f"{name}: label {label!r}")
    return failures


# --- trees ---------------------------------------------------------------------

class Loop:
    """A read-only loop device over one partition of the image, mounted."""

    def __init__(self, img, offset, size):
        self.dev = run("losetup", "-f", "--show", "-r", "-o", str(offset),
                       "--sizelimit", str(size), img, check=True).stdout.strip()
        self.mnt = tempfile.mkdtemp(prefix="sysinstall-check-")
        m = run("mount", "-t", "ext4", "-o", "ro,noload", self.dev, self.mnt)
        if m.returncode != 0:
            self.close()
            raise RuntimeError(f"mount {self.dev}: {m.stderr.strip()}")

    def close(self):
        run("umount", self.mnt)
        os.rmdir(self.mnt)
        run("losetup", "-d", self.dev)


def open_tar(path):
    if path.endswith((".zst", ".zstd")):
        proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE)
        return tarfile.open(fileobj=proc.stdout, mode="r|"), proc
    return tarfile.open(path, mode="r|*"), None


def acl_text(path, default=False):
    """The access (or default) ACL as getfacl prints it, numeric ids, one line."""
    argv = ["getfacl", "-cpn", "-d" if default else "-a", path]
    out = run(*argv).stdout
    return ",".join(l.split("\t")[0].strip() for l in out.splitlines()
                    if l and not l.startswith("#"))


def tar_acl(text):
    """SCHILY.acl.* text (GNU tar: tag:name:perms[:id]) in getfacl -n form.
    Names without an id were resolved by tar on the machine that made the
    archive (the fixture is made on this host), so resolve them here."""
    import grp
    import pwd
    out = []
    for e in text.replace("\n", ",").split(","):
        f = e.split(":")
        if len(f) < 3:
            continue
        qualifier = f[3] if len(f) >= 4 and f[1] else f[1]
        if qualifier and not qualifier.isdigit():
            try:
                qualifier = str(grp.getgrnam(qualifier).gr_gid if f[0] == "group"
                                else pwd.getpwnam(qualifier).pw_uid)
            except KeyError:
                pass
        out.append(f"{f[0]}:{qualifier}:{f[2]}")
    return ",".join(out)


# What sysinstall adds to a slot beside the tarball: its install report
# (and the directories to it, when the tarball has none); the file last.
REPORT_PATHS = ("var", "var/log", "var/log/sysinstall", "var/log/sysinstall/install.json")


def cmd_tree(a):
    user, _ = load_layout(a.layout)
    q = user_parts(user).get(a.name)
    if q is None:
        report(False, f"{a.name} is in the layout")
        return failures
    loop = Loop(a.img, q["first_lba"] * SECTOR, (q["last_lba"] + 1 - q["first_lba"]) * SECTOR)
    problems = []
    seen = {"."}
    try:
        tf, proc = open_tar(a.tarball)
        links = {}
        for m in tf:
            rel = os.path.normpath(m.name.lstrip("/"))
            seen.add(rel)
            path = os.path.join(loop.mnt, rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                problems.append(f"{rel}: missing")
                continue
            want_type = {tarfile.REGTYPE: stat.S_IFREG, tarfile.AREGTYPE: stat.S_IFREG,
                         tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK,
                         tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                         tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.LNKTYPE: stat.S_IFREG}.get(m.type)
            if want_type is None:
                problems.append(f"{rel}: unexpected tar type {m.type!r}")
                continue
            if stat.S_IFMT(st.st_mode) != want_type:
                problems.append(f"{rel}: type {oct(stat.S_IFMT(st.st_mode))}, tar {oct(want_type)}")
                continue
            if m.type == tarfile.LNKTYPE:
                target = os.path.join(loop.mnt, os.path.normpath(m.linkname.lstrip("/")))
                if not os.path.exists(target) or os.lstat(target).st_ino != st.st_ino:
                    problems.append(f"{rel}: not a hardlink of {m.linkname}")
                continue
            if stat.S_IMODE(st.st_mode) != m.mode and m.type != tarfile.SYMTYPE:
                problems.append(f"{rel}: mode {oct(stat.S_IMODE(st.st_mode))}, tar {oct(m.mode)}")
            if (st.st_uid, st.st_gid) != (m.uid, m.gid):
                problems.append(f"{rel}: owner {st.st_uid}:{st.st_gid}, tar {m.uid}:{m.gid}")
            # The installer refreshes etc/timestamp (as tegra-sysinstall did):
            # a newer 14-digit UTC stamp, not the tarball's.
            refreshed = rel == "etc/timestamp" and m.isreg()
            if refreshed:
                with open(path, "rb") as f:
                    stamp = f.read()
                if not re.fullmatch(rb"\d{14}\n", stamp) or int(st.st_mtime) < int(m.mtime):
                    problems.append(f"{rel}: not a refreshed timestamp ({stamp!r})")
            elif int(st.st_mtime) != int(m.mtime):
                problems.append(f"{rel}: mtime {int(st.st_mtime)}, tar {int(m.mtime)}")
            if m.type == tarfile.SYMTYPE and os.readlink(path) != m.linkname:
                problems.append(f"{rel}: symlink to {os.readlink(path)}, tar {m.linkname}")
            if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE) and \
                    (os.major(st.st_rdev), os.minor(st.st_rdev)) != (m.devmajor, m.devminor):
                problems.append(f"{rel}: device {os.major(st.st_rdev)},{os.minor(st.st_rdev)}")
            if m.isreg() and not refreshed:
                data = tf.extractfile(m).read()
                with open(path, "rb") as f:
                    if hashlib.sha256(f.read()).digest() != hashlib.sha256(data).digest():
                        problems.append(f"{rel}: contents differ")
            for key, value in m.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    name = key[len("SCHILY.xattr."):]
                    try:
                        got = os.getxattr(path, name, follow_symlinks=False)
                    except OSError:
                        got = None
                    want = value.encode("utf-8", "surrogateescape")
                    if got != want:
                        problems.append(f"{rel}: xattr {name} {got!r}, tar {want!r}")
                elif key == "SCHILY.acl.access":
                    if acl_text(path) != tar_acl(value):
                        problems.append(f"{rel}: ACL {acl_text(path)!r}, tar {tar_acl(value)!r}")
                elif key == "SCHILY.acl.default":
                    if acl_text(path, True) != tar_acl(value):
                        problems.append(f"{rel}: default ACL {acl_text(path, True)!r}, "
                                        f"tar {tar_acl(value)!r}")
        if proc:
            proc.wait()
        for dirpath, dirs, files in os.walk(loop.mnt):
            for n in dirs + files:
                rel = os.path.relpath(os.path.join(dirpath, n), loop.mnt)
                if rel not in seen and rel != "lost+found" and rel not in REPORT_PATHS:
                    problems.append(f"{rel}: not in the tarball")
        # The install report sysinstall leaves in a slot it wrote: JSON that
        # names the tarball it unpacked.
        report_path = os.path.join(loop.mnt, REPORT_PATHS[-1])
        if REPORT_PATHS[-1] not in seen and os.path.exists(report_path):
            try:
                with open(report_path, encoding="utf-8") as f:
                    rep = json.load(f)
                if rep.get("result") != "pass" or not rep.get("rootfs_sha256"):
                    problems.append(f"{REPORT_PATHS[-1]}: not a report of a pass ({rep.get('result')})")
            except (OSError, ValueError) as e:
                problems.append(f"{REPORT_PATHS[-1]}: {e}")
    finally:
        loop.close()
    report(not problems, f"{a.name}: tree equals {os.path.basename(a.tarball)} "
           f"({len(seen) - 1} entries)",
           f"{len(problems)} differences: " + "; ".join(problems[:15]))
    return failures


# --- boot partitions -----------------------------------------------------------

class BootArea:
    """The boot partitions of the layout over boot0+boot1 (one linear device)
    and the user-area partitions over the SD image."""

    def __init__(self, layout, boot0, boot1, img):
        self.user, boot = load_layout(layout)
        self.boot = {p["name"]: p for p in (boot or {}).get("partitions", [])}
        self.boot_bytes = open(boot0, "rb").read() + open(boot1, "rb").read()
        self.img = img

    def read(self, name):
        """Whole contents of a partition, or None when the layout has none."""
        if name in self.boot:
            p = self.boot[name]
            return bytes(self.boot_bytes[p["offset"]:p["offset"] + p["size"]])
        q = user_parts(self.user).get(name)
        if q is None:
            return None
        with open(self.img, "rb") as f:
            f.seek(q["first_lba"] * SECTOR)
            return f.read((q["last_lba"] + 1 - q["first_lba"]) * SECTOR)

    def has(self, name):
        return name in self.boot or name in user_parts(self.user)

    def bootinfo_in(self, name):
        """The part of a boot partition that the tegra-bootinfo store takes
        (docs/spec/bup-format.md §9.1: boot1's sectors N-68 .. N-37 on
        T186/T194 eMMC), relative to the partition, or None."""
        p = self.boot.get(name)
        end = len(self.boot_bytes)
        lo, hi = end - 68 * SECTOR, end - 36 * SECTOR
        if p is None or p["offset"] + p["size"] <= lo or p["offset"] >= hi:
            return None
        return (max(lo - p["offset"], 0), min(hi, p["offset"] + p["size"]) - p["offset"])


# T18x BR-BCT copies (docs/spec/bup-format.md §4.6): block 0 slot 1, block 1 slot 0, block 0 slot 0.
BCT_BLOCK = 16384
BCT_PAGE = 512
# First 22 bytes of SMD/SMD_b (docs/spec/bup-format.md §4.9 golden vectors): after
# --initialize (slot 0 active) and after an update run from slot 0.
SMD_GOLDEN = {
    "initialize": "004e4243030302000f5f6107000e5f62070133" "14fcfe",
    # docs/spec/bup-format.md §4.9: update from slot A after slot A booted successfully.
    "update": "004e4243030302000e5f6107010f5f6207008e" "b50590",
    # The same update on a board that never booted in between (slot A is still
    # "not yet successful", as --initialize left it; nv_update_verifier would
    # have set it on a real boot): REF's smd_slot_mark_active(1) on the
    # initialize bytes. CRC-32 over the 18 bytes computed with zlib.
    "update-unbooted": "004e4243030302000e5f6107000f5f6207002b" "66595b",
}


def holds(data, length, sha, name, zero_tail=True, store=None):
    """The partition starts with the image and (REF erases first) is zero after it,
    but for the tegra-bootinfo store (`store`: a range in it), which must lie
    after the image."""
    if data is None:
        return f"{name}: not in the layout"
    if store is not None:
        if store[0] < length:
            return f"{name}: the image runs into the tegra-bootinfo store at {store[0]}"
        data = data[:store[0]] + bytes(store[1] - store[0]) + data[store[1]:]
    if len(data) < length:
        return f"{name}: {len(data)} bytes, image {length}"
    if hashlib.sha256(data[:length]).hexdigest() != sha:
        return f"{name}: first {length} bytes differ from the payload"
    if zero_tail and data[length:].count(0) != len(data) - length:
        return f"{name}: not zero after the image"
    return None


def cmd_boot(a):
    area = BootArea(a.layout, a.boot0, a.boot1, a.img)
    new = json.load(open(a.manifest))["expected"]
    old = json.load(open(a.old))["expected"] if a.old else None
    slots = a.slots.split(",")
    for part, e in sorted(new.items()):
        twin = part + "_b"
        targets = []  # (partition name, expected entry)
        if part == "BCT":
            targets.append(("BCT", e))
        elif area.has(twin):
            targets.append((part, e if "a" in slots else (old or {}).get(part)))
            targets.append((twin, e if "b" in slots else (old or {}).get(part)))
        else:  # not redundant: written on initialize only
            targets.append((part, e if old is None else old.get(part)))
        if part == "mb1" and old is not None:
            # With a BCT task, REF also writes the other slot's mb1 (§4.2, step 16).
            targets = [(n, e) for n, _ in targets]
        for name, want in targets:
            if want is None:
                continue
            data = area.read(name)
            if part == "BCT":
                slot = -(-want["length"] // BCT_PAGE) * BCT_PAGE
                errs = [err for off in (slot, BCT_BLOCK, 0)
                        if (err := holds(data[off:] if data else None, want["length"],
                                         want["sha256"], f"BCT@{off}", zero_tail=False))]
                report(not errs, f"BCT: three copies at {slot}, {BCT_BLOCK}, 0", "; ".join(errs))
                continue
            err = holds(data, want["length"], want["sha256"], name, store=area.bootinfo_in(name))
            report(err is None, f"{name}: holds the payload's {part} "
                   f"({'new' if want is e else 'old'}, {want['length']} bytes)", err or "")
    if a.smd:
        want = bytes.fromhex(SMD_GOLDEN[a.smd])
        for name in ("SMD", "SMD_b"):
            data = area.read(name)
            got = data[:len(want)] if data else None
            report(got == want, f"{name}: slot metadata as REF writes it after {a.smd} "
                   f"(slot {'A' if a.smd == 'initialize' else 'B'} active)",
                   f"got {got.hex() if got else None}, want {want.hex()}")
    return failures


# --- hashes --------------------------------------------------------------------

def cmd_hashes(a):
    area = BootArea(a.layout, a.boot0, a.boot1, a.img)
    names = list(area.boot) + [q["name"] for q in area.user["partitions"]]
    out = {n: hashlib.sha256(area.read(n)).hexdigest() for n in names}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print(f"ok - hashed {len(out)} partitions into {a.out}")
    return 0


def cmd_changed(a):
    before, after = json.load(open(a.before)), json.load(open(a.after))
    changed = sorted(n for n in after if before.get(n) != after[n])
    print(f"   changed: {' '.join(changed) or '(none)'}")
    allow = re.compile(a.allow)
    bad = [n for n in changed if not allow.fullmatch(n)]
    report(not bad, f"only partitions matching {a.allow} changed", f"also changed: {bad}")
    for n in a.must:
        if n in after:
            report(n in changed, f"{n} changed")
    for n in a.same:
        if n in after:
            report(n not in changed, f"{n} unchanged")
    return failures


# --- partition nodes -------------------------------------------------------------

def cmd_nodes(a):
    user, _ = load_layout(a.layout)
    nodes = {}
    with open(a.listing) as f:
        for line in f:
            words = line.split()
            if words:
                nodes[words[0]] = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    # sysfs counts 512-byte units whatever the logical block size.
    unit = user.get("sector_size", SECTOR) // 512
    want = {f"{a.disk}p{q['number']}": q for q in user["partitions"]}
    for node, q in sorted(want.items(), key=lambda kv: kv[1]["number"]):
        got = nodes.get(node)
        if got is None:
            report(False, f"/dev/{node} ({q['name']}) appeared in the guest")
            continue
        errs = []
        if got.get("PARTNAME") != q["name"]:
            errs.append(f"PARTNAME {got.get('PARTNAME')!r}")
        if int(got.get("start", -1)) != q["first_lba"] * unit:
            errs.append(f"start {got.get('start')}, layout {q['first_lba'] * unit}")
        if int(got.get("size", -1)) != (q["last_lba"] - q["first_lba"] + 1) * unit:
            errs.append(f"size {got.get('size')}")
        report(not errs, f"/dev/{node} is {q['name']} at the layout's sectors", "; ".join(errs))
    extra = sorted(set(nodes) - set(want))
    report(not extra, f"no partition nodes beyond the layout's {len(want)}", f"also {extra}")
    return failures


# --- the ESP ---------------------------------------------------------------------

def cmd_esp(a):
    user, _ = load_layout(a.layout)
    q = user_parts(user).get(a.part)
    if q is None:
        report(False, f"{a.part} is in the layout")
        return failures
    off, size = q["first_lba"] * SECTOR, (q["last_lba"] - q["first_lba"] + 1) * SECTOR
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    image = f"{a.img}@@{off}"
    with tempfile.TemporaryDirectory(prefix="sysinstall-esp-") as tmp:
        # fsck.fat takes no offset: check a copy of the partition.
        part = os.path.join(tmp, "esp.img")
        with open(a.img, "rb") as src, open(part, "wb") as dst:
            src.seek(off)
            left = size
            while left:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
        f = run("fsck.fat", "-n", part)
        report(f.returncode == 0, f"{a.part}: fsck.fat -n finds a clean FAT filesystem",
               (f.stdout + f.stderr).strip()[-400:])
        for spec in a.file:
            path, _, source = spec.partition("=")
            d = subprocess.run(["mdir", "-i", image, "::/" + os.path.dirname(path)],
                               capture_output=True, text=True, env=env)
            listed = os.path.basename(path).upper() in d.stdout.upper()
            report(d.returncode == 0 and listed,
                   f"{a.part}: mdir lists {os.path.basename(path)} in /{os.path.dirname(path)}",
                   (d.stdout + d.stderr).strip()[-300:])
            out = os.path.join(tmp, "copy")
            c = subprocess.run(["mcopy", "-n", "-i", image, "::/" + path, out],
                               capture_output=True, text=True, env=env)
            if c.returncode != 0:
                report(False, f"{a.part}: mcopy {path}", c.stderr.strip()[-300:])
                continue
            got, want = open(out, "rb").read(), open(source, "rb").read()
            report(got == want, f"{a.part}: {path} is byte for byte {os.path.basename(source)} "
                   f"({len(want)} bytes)", f"{len(got)} bytes, sha256 "
                   f"{hashlib.sha256(got).hexdigest()[:16]} vs {hashlib.sha256(want).hexdigest()[:16]}")
            os.unlink(out)
        for path in a.gone:
            c = subprocess.run(["mdir", "-i", image, "::/" + path],
                               capture_output=True, text=True, env=env)
            report(c.returncode != 0, f"{a.part}: no {path}")
    return failures


# --- T234 kernel partitions -------------------------------------------------------

def read_part(img, user, name):
    q = user_parts(user).get(name)
    if q is None:
        return None
    with open(img, "rb") as f:
        f.seek(q["first_lba"] * SECTOR)
        return f.read((q["last_lba"] + 1 - q["first_lba"]) * SECTOR)


def cmd_kernel(a):
    """A_kernel, A_kernel-dtb (slot a) and B_kernel, B_kernel-dtb (slot b)
    hold the entries the board's spec selects from a T234 kernel payload
    (mkbup.py --t234 kernel manifest); with --old, the slots not written
    still hold the old manifest's."""
    user, _ = load_layout(a.layout)
    new = json.load(open(a.manifest))["expected"]
    old = json.load(open(a.old))["expected"] if a.old else None
    slots = a.slots.split(",")
    for entry in ("kernel", "kernel-dtb"):
        for slot in ("a", "b"):
            name = f"{slot.upper()}_{entry}"
            want, which = (new.get(entry), "new") if slot in slots else \
                ((old or {}).get(entry), "old")
            if want is None:
                continue
            # Zeros after the image, as tegra-bootloader-update leaves a boot
            # partition: nothing of an older, longer kernel survives.
            err = holds(read_part(a.img, user, name), want["length"], want["sha256"], name,
                        zero_tail=True)
            report(err is None, f"{name}: holds the payload's {entry} ({which}, "
                   f"{want['length']} bytes)", err or "")
    return failures


# --- UEFI variables ----------------------------------------------------------------

def load_vars(path):
    """name -> (attr, data bytes) from a `virt-fw-vars --output-json` dump."""
    with open(path) as f:
        doc = json.load(f)
    return {v["name"]: (v["attr"], bytes.fromhex(v["data"])) for v in doc["variables"]}


def efivarfs_hex(var):
    attr, data = var
    return (attr.to_bytes(4, "little") + data).hex()


def cmd_vars(a):
    store = load_vars(a.dump)
    for spec in a.value:
        name, _, want = spec.partition("=")
        got = efivarfs_hex(store[name]) if name in store else None
        report(got == want.lower(), f"{name} = {want}", f"the store has {got}")
    for name in a.absent:
        got = efivarfs_hex(store[name]) if name in store else None
        report(got is None, f"{name} is not in the store", f"it holds {got}")
    if a.same:
        other = load_vars(a.same[0])
        for name in a.same[1:]:
            report(store.get(name) == other.get(name) and name in store,
                   f"{name} unchanged ({efivarfs_hex(store[name]) if name in store else 'absent'})",
                   f"was {efivarfs_hex(other[name]) if name in other else 'absent'}")
    return failures


FRAME_MARKER = "@@sysinstall "


def unframe(line):
    """The JSON of the first intact `--events console` frame in a console
    line (README: Driving the console from a program), or None."""
    line = line.rstrip("\r\n")
    at = line.find(FRAME_MARKER)
    while at >= 0:
        crc, _, text = line[at + len(FRAME_MARKER):].partition(" ")
        if (len(crc) == 8 and all(c in "0123456789abcdef" for c in crc)
                and zlib.crc32(text.encode()) == int(crc, 16)):
            return text
        at = line.find(FRAME_MARKER, at + 1)
    return None


def cmd_frames(a):
    with open(a.console, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    marked = [l for l in lines if FRAME_MARKER in l]
    texts = [t for t in map(unframe, marked) if t is not None]
    events = [json.loads(t) for t in texts]
    report(bool(events), "the console carries intact event frames",
           f"{len(marked)} lines with the marker, none intact")
    if not events:
        return
    report(len(texts) >= len(marked) - 2, "nearly every framed line is intact",
           f"{len(marked) - len(texts)} of {len(marked)} broken")
    seqs = [e.get("seq") for e in events]
    report(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "the frames are in order",
           str(seqs[:20]))
    last = events[-1]
    report(last.get("kind") == "summary", "the last frame is the summary", texts[-1][:200])
    report(last.get("exit") == a.exit, f"the summary says exit {a.exit}", str(last.get("exit")))
    if a.copy:
        try:
            with open(a.copy, encoding="utf-8") as f:
                copy = unframe(f.read())
        except OSError as e:
            copy = None
            print(f"   {a.copy}: {e}")
        report(copy == texts[-1], "/run/sysinstall/summary holds the same intact summary frame",
               repr(copy)[:200])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gpt"); p.add_argument("img"); p.add_argument("layout")
    p = sub.add_parser("fs"); p.add_argument("img"); p.add_argument("layout")
    p.add_argument("names", nargs="+")
    p = sub.add_parser("tree"); p.add_argument("img"); p.add_argument("layout")
    p.add_argument("name"); p.add_argument("tarball")
    p = sub.add_parser("boot"); p.add_argument("layout"); p.add_argument("boot0")
    p.add_argument("boot1"); p.add_argument("img"); p.add_argument("manifest")
    p.add_argument("--slots", default="a,b", help="slots written with MANIFEST")
    p.add_argument("--old", help="manifest of what the other slot still holds")
    p.add_argument("--smd", choices=sorted(SMD_GOLDEN), help="check the slot metadata")
    p = sub.add_parser("hashes"); p.add_argument("img"); p.add_argument("layout")
    p.add_argument("boot0"); p.add_argument("boot1"); p.add_argument("out")
    p = sub.add_parser("changed"); p.add_argument("before"); p.add_argument("after")
    p.add_argument("--allow", required=True); p.add_argument("--must", nargs="*", default=[])
    p.add_argument("--same", nargs="*", default=[])
    p = sub.add_parser("nodes"); p.add_argument("listing"); p.add_argument("layout")
    p.add_argument("--disk", required=True)
    p = sub.add_parser("esp"); p.add_argument("img"); p.add_argument("layout"); p.add_argument("part")
    p.add_argument("--file", action="append", default=[], metavar="PATH=SOURCE")
    p.add_argument("--gone", action="append", default=[], metavar="PATH")
    p = sub.add_parser("kernel"); p.add_argument("img"); p.add_argument("layout")
    p.add_argument("manifest"); p.add_argument("--slots", default="a,b")
    p.add_argument("--old", help="manifest of what the slots not written still hold")
    p = sub.add_parser("frames"); p.add_argument("console")
    p.add_argument("--exit", type=int, required=True); p.add_argument("--copy")
    p = sub.add_parser("vars"); p.add_argument("dump")
    p.add_argument("--value", action="append", default=[], metavar="NAME=HEX")
    p.add_argument("--absent", action="append", default=[], metavar="NAME")
    p.add_argument("--same", nargs="+", metavar=("OTHER_JSON", "NAME"))
    a = ap.parse_args()
    globals()["cmd_" + a.cmd](a)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
