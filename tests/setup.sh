#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (idempotent; a no-op
# when everything is there). Root is needed for apt; without it, missing tools
# make the tests that need them skip.
set -euo pipefail

pkgs=(gdisk e2fsprogs fdisk util-linux attr acl busybox-static cpio kmod zstd xz-utils
      bzip2 pigz python3 musl-tools qemu-system-arm qemu-user-static)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: missing ${missing[*]} (not root: tests needing them will skip)" >&2
    fi
fi

if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi
# fuzz/run.sh drives libFuzzer through cargo-fuzz (from crates.io).
if command -v cargo >/dev/null && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz
fi
