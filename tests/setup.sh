#!/usr/bin/env bash
# Installs what the tests, the static builds and the qemu tier need on a fresh
# Debian 12 machine (idempotent; a no-op when everything is there). Root is
# needed for apt; without it, a test whose tool is missing fails and names it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/debs.sh
. "$repo/scripts/debs.sh"

pkgs=(gdisk e2fsprogs fdisk util-linux bsdutils attr acl libcap2-bin busybox-static cpio kmod
      zstd xz-utils bzip2 pigz python3 python3-venv musl-tools gcc-aarch64-linux-gnu
      qemu-system-arm qemu-user-static dosfstools mtools openssl qemu-efi-aarch64
      android-sdk-libsparse-utils bmap-tools)
# musl-dev:arm64 (the aarch64 musl C compiler wrapper for zstd-sys and
# liblzma-sys) and the arm64 packages of the initramfs come from arm64.
command -v dpkg >/dev/null && deb_ensure_arch arm64 || true
pkgs+=(musl-dev:arm64)
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
        echo "setup: missing ${missing[*]} (not root: the tests that need them will fail, naming them)" >&2
    fi
fi

# EDK2's GenerateCapsule.py (PyPI edk2-basetools, with its test signing
# certificates) makes the real capsules the T234 tests parse; the tests find
# it in this venv (SYSINSTALL_EDK2_VENV overrides the place).
edk2_venv=${SYSINSTALL_EDK2_VENV:-${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}/edk2-venv}
if ! "$edk2_venv/bin/python" -c 'import edk2basetools.Capsule.GenerateCapsule' 2>/dev/null; then
    echo "setup: installing edk2-basetools into $edk2_venv"
    python3 -m venv "$edk2_venv"
    "$edk2_venv/bin/pip" install -q --disable-pip-version-check "edk2-basetools==0.1.53"
fi

# PyPI virt-firmware's virt-fw-vars seeds and reads the UEFI variable store
# of the qemu UEFI tier (tests/qemu/uefi.sh; SYSINSTALL_VIRTFW_VENV overrides
# the place).
virtfw_venv=${SYSINSTALL_VIRTFW_VENV:-${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}/virt-firmware-venv}
if ! "$virtfw_venv/bin/virt-fw-vars" --help >/dev/null 2>&1; then
    echo "setup: installing virt-firmware into $virtfw_venv"
    python3 -m venv "$virtfw_venv"
    "$virtfw_venv/bin/pip" install -q --disable-pip-version-check "virt-firmware==26.10"
fi

# Jumpstarter 0.9 from PyPI for the Jumpstarter driver in contrib/ (its unit
# tests, and the qemu tier that drives an install through it,
# tests/qemu/jumpstarter.sh; SYSINSTALL_JUMPSTARTER_VENV overrides the place).
# The driver itself is not installed: the tests put its source on PYTHONPATH.
js_venv=${SYSINSTALL_JUMPSTARTER_VENV:-${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}/jumpstarter-venv}
js_pkgs=(jumpstarter==0.9.0 jumpstarter-cli==0.9.0 jumpstarter-driver-composite==0.9.0
         jumpstarter-driver-pyserial==0.9.0 jumpstarter-driver-power==0.9.0 pytest==9.2.0)
if ! "$js_venv/bin/python" -c 'import jumpstarter_driver_pyserial, jumpstarter_driver_power, pytest' 2>/dev/null ||
   ! [ -x "$js_venv/bin/jmp" ]; then
    echo "setup: installing Jumpstarter 0.9 into $js_venv"
    python3 -m venv "$js_venv"
    if ! "$js_venv/bin/pip" install -q --disable-pip-version-check "${js_pkgs[@]}"; then
        echo "setup: cannot install ${js_pkgs[*]} from PyPI into $js_venv (is PyPI reachable? pip's error is above)" >&2
        exit 1
    fi
fi

if command -v rustup >/dev/null; then
    installed=$(rustup component list --installed 2>/dev/null)
    grep -q '^clippy' <<<"$installed" || rustup component add clippy
    grep -q '^rustfmt' <<<"$installed" || rustup component add rustfmt
    targets=$(rustup target list --installed 2>/dev/null)
    for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
        grep -qx "$t" <<<"$targets" || rustup target add "$t"
    done
fi
# fuzz/run.sh drives libFuzzer through cargo-fuzz (from crates.io).
if command -v cargo >/dev/null && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz
fi
