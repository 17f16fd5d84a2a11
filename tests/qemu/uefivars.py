#!/usr/bin/env python3
"""The UEFI variable store of the qemu UEFI tier (an AAVMF vars file), from
the host, through PyPI virt-firmware's `virt-fw-vars` (tests/setup.sh puts
it into a venv; --tool names it).

  seed STORE VAR...   set variables in STORE in place; VAR is
                      NAME[@GUID]=TYPE:VALUE with TYPE u32, u64, u32x2 (two
                      u32, comma-separated), ascii (no NUL, as meta-tegra
                      writes the platform specs) or hex; the GUID defaults to
                      NVIDIA's public one; every variable is NV|BS|RT (7)
  dump STORE OUT      the whole store as virt-fw-vars JSON (check.py vars)

The firmware owns the format: a store must have been through one boot
before virt-fw-vars can read it (Debian's AAVMF_VARS.fd is all zeroes and
the firmware formats it).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

NVIDIA_PUBLIC_GUID = "781e084c-a330-417c-b678-38e696380cb9"  # gNVIDIAPublicVariableGuid
NV_BS_RT = 7


def encode(kind, value):
    if kind == "u32":
        return int(value, 0).to_bytes(4, "little")
    if kind == "u64":
        return int(value, 0).to_bytes(8, "little")
    if kind == "u32x2":
        a, b = value.split(",")
        return int(a, 0).to_bytes(4, "little") + int(b, 0).to_bytes(4, "little")
    if kind == "ascii":
        return value.encode("ascii")
    if kind == "hex":
        return bytes.fromhex(value)
    raise ValueError(f"unknown type {kind!r}")


def parse_var(spec):
    name, _, typed = spec.partition("=")
    name, _, guid = name.partition("@")
    kind, _, value = typed.partition(":")
    return {"name": name, "guid": guid or NVIDIA_PUBLIC_GUID, "attr": NV_BS_RT,
            "data": encode(kind, value).hex()}


def tool(a, *args):
    r = subprocess.run([a.tool, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"uefivars: {os.path.basename(a.tool)} {' '.join(args)}: "
                 f"{(r.stdout + r.stderr).strip()[-500:]}")


def cmd_seed(a):
    doc = {"version": 2, "variables": [parse_var(v) for v in a.vars]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    try:
        tool(a, "--inplace", a.store, "--set-json", f.name)
    finally:
        os.unlink(f.name)
    for v in doc["variables"]:
        print(f"   seeded {v['name']}-{v['guid']} = "
              f"{v['attr'].to_bytes(4, 'little').hex()} {v['data']}")


def cmd_dump(a):
    tool(a, "-i", a.store, "--output-json", a.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", required=True, help="the virt-fw-vars executable")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("seed"); p.add_argument("store"); p.add_argument("vars", nargs="+")
    p = sub.add_parser("dump"); p.add_argument("store"); p.add_argument("out")
    a = ap.parse_args()
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
