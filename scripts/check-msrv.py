#!/usr/bin/env python3
"""Checks that every crate in Cargo.lock can be built by the Rust of
Cargo.toml's `rust-version` (the MSRV: the oldest Rust a supported Yocto
release brings, see yocto/README.md).

Only one toolchain is installed here, so the check reads what each locked
crate declares, as `cargo metadata` reports it:

* a declared `rust-version` must not be newer than the MSRV;
* the crate's edition must exist in the MSRV (2024 needs 1.85): an old cargo
  already fails to *parse* such a manifest, and Yocto vendors every locked
  crate, those of other platforms too;
* a crate that declares no `rust-version` is listed, not failed: its edition
  is the only bound known.

Clippy's `incompatible_msrv` lint (in `cargo clippy -D warnings`) checks our
own use of the standard library against the same `rust-version`.

usage: scripts/check-msrv.py [--offline]
"""

import json
import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Rust release that stabilised each edition.
EDITION_SINCE = {"2015": (1, 0), "2018": (1, 31), "2021": (1, 56), "2024": (1, 85)}
# Cargo.lock format versions and the cargo that first reads each.
LOCKFILE_SINCE = {3: (1, 53), 4: (1, 78)}


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def show(v):
    return ".".join(str(p) for p in v[:2]) + ("" if v[2] == 0 else f".{v[2]}")


def main():
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        declared = tomllib.load(f)["package"].get("rust-version")
    if not declared:
        sys.exit("check-msrv: Cargo.toml declares no rust-version")
    msrv = version(declared)

    with open(os.path.join(REPO, "Cargo.lock"), "rb") as f:
        lock = tomllib.load(f)
    problems = []
    fmt = lock.get("version", 1)
    if version(".".join(map(str, LOCKFILE_SINCE.get(fmt, (99, 0))))) > msrv:
        problems.append(f"Cargo.lock is format v{fmt}, which cargo {declared} cannot read")
    locked = {(p["name"], p["version"]) for p in lock.get("package", []) if p.get("source")}

    cmd = ["cargo", "metadata", "--format-version", "1", "--locked"]
    if "--offline" in sys.argv[1:]:
        cmd.append("--offline")
    meta = json.loads(subprocess.run(cmd, cwd=REPO, check=True, capture_output=True).stdout)
    packages = {(p["name"], p["version"]): p for p in meta["packages"] if p.get("source")}

    undeclared = []
    for key in sorted(locked):
        p = packages.get(key)
        if p is None:
            problems.append(f"{key[0]} {key[1]}: in Cargo.lock but not in cargo metadata")
            continue
        edition = EDITION_SINCE.get(p["edition"], (99, 0)) + (0,)
        if edition > msrv:
            problems.append(f"{key[0]} {key[1]}: edition {p['edition']} needs Rust {show(edition)}")
        if p.get("rust_version"):
            if version(p["rust_version"]) > msrv:
                problems.append(f"{key[0]} {key[1]}: rust-version {p['rust_version']}")
        else:
            undeclared.append(f"{key[0]} {key[1]} ({p['edition']})")

    if problems:
        for line in problems:
            print(f"check-msrv: {line} > rust-version {declared}", file=sys.stderr)
        sys.exit(f"check-msrv: {len(problems)} crate(s) need a newer Rust than {declared}; "
                 "see .cargo/config.toml (the MSRV-aware resolver) and `cargo update`")
    print(f"check-msrv: all {len(locked)} locked crates build with Rust {declared} "
          f"({len(locked) - len(undeclared)} declare a rust-version ≤ {declared}; "
          f"{len(undeclared)} declare none, bounded by their edition only: {', '.join(undeclared)})")


if __name__ == "__main__":
    main()
