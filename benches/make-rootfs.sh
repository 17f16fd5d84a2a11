#!/usr/bin/env bash
# Builds the benchmark rootfs tarballs once and caches them:
#   $CACHE/rootfs.tar.gz and $CACHE/rootfs.tar.zst
# from a debootstrap bookworm tree (about 270 MB, 12k entries, with
# security.capability on /usr/bin/ping and POSIX ACLs on /var/log/journal),
# tarred the way a Yocto/L4T image is: numeric owners, xattrs, ACLs.
# Usage: benches/make-rootfs.sh [CACHE]   (default /var/tmp/sysinstall-bench)
set -euo pipefail
CACHE=${1:-${SYSINSTALL_BENCH_CACHE:-/var/tmp/sysinstall-bench}}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
INCLUDE=systemd-sysv,udev,iputils-ping,libcap2-bin,python3,openssh-server,iproute2,curl,less,vim-tiny,locales,kmod,ca-certificates,perl
mkdir -p "$CACHE"
if [ -s "$CACHE/rootfs.tar.zst" ] && [ -s "$CACHE/rootfs.tar.gz" ]; then
    echo "rootfs tarballs cached in $CACHE"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-rootfs: debootstrap needs root" >&2; exit 1; }
tree="$CACHE/tree"
rm -rf "$tree"
echo "debootstrap bookworm ($MIRROR) into $tree ..."
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$tree" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
# Make sure the tree carries what a real image has: a capability and ACLs.
setcap cap_net_raw=ep "$tree/usr/bin/ping" 2>/dev/null || true
mkdir -p "$tree/var/log/journal"
setfacl -m g:adm:rx -d -m g:adm:rx "$tree/var/log/journal" 2>/dev/null || true
tar --numeric-owner --xattrs --xattrs-include='*' --acls -C "$tree" -cpf "$CACHE/rootfs.tar" .
pigz -6 -c "$CACHE/rootfs.tar" >"$CACHE/rootfs.tar.gz.tmp" && mv "$CACHE/rootfs.tar.gz.tmp" "$CACHE/rootfs.tar.gz"
zstd -q -19 -T2 -f "$CACHE/rootfs.tar" -o "$CACHE/rootfs.tar.zst"
rm -rf "$tree" "$CACHE/rootfs.tar"
ls -l "$CACHE"
