#!/usr/bin/env bash
# Builds a tree with every kind of entry a rootfs can hold, and tars it with
# GNU tar in every format sysinstall must read:
#   gnu.tar            --format=gnu: GNU long names (L/K), base-256 ids, old GNU sparse (S)
#   posix.tar          --format=posix with xattrs and ACLs, sparse 1.0
#   posix-sparse00.tar, posix-sparse01.tar: PAX sparse 0.0 and 0.1
#   posix.tar.{zst,gz,xz,bz2}, posix-pzstd.tar.zst (two frames), pigz multi-member .gz
# Needs root (mknod, chown, trusted.* xattrs). Usage: make-tarballs.sh OUTDIR
set -euo pipefail
out=$1
mkdir -p "$out"
t="$out/tree"
rm -rf "$t"; mkdir -p "$t"
cd "$t"

# Regular files of awkward sizes, including one of random data.
: > empty
printf x > one
head -c 511 /dev/zero | tr '\0' a > b511
head -c 512 /dev/zero | tr '\0' b > b512
head -c 513 /dev/zero | tr '\0' c > b513
head -c 3000000 /dev/urandom > random.bin
printf 'spaces' > 'name with spaces '
printf 'utf8' > 'grüße-ünïcödé-日本'
printf 'nl' > "$(printf 'new\nline')"

# Modes and owners: setuid, setgid, sticky, a read-only dir with contents,
# ids that need base-256 (gnu) or PAX (posix).
mkdir -p dirs/ro dirs/sticky dirs/setgid dirs/empty
printf s > dirs/suid; chmod 4755 dirs/suid
printf g > dirs/sgid; chmod 2711 dirs/sgid
printf r > dirs/ro/inside
chmod 1777 dirs/sticky; chmod 2775 dirs/setgid
chown 1000:1000 dirs/setgid
chown 4000000000:3000000000 dirs/suid one
chown 0:65534 b512
chmod 0555 dirs/ro
chmod 0600 random.bin

# Links: relative, absolute, dangling; hard links (three names); long targets.
mkdir -p links
ln -s ../one links/rel
ln -s /etc/passwd links/abs
ln -s does/not/exist links/dangling
ln b513 links/hard1; ln b513 links/hard2
long=$(printf 'd%.0s' $(seq 1 60))
mkdir -p "deep/$long/$long/$long"
printf deep > "deep/$long/$long/$long/$(printf 'f%.0s' $(seq 1 120))"
ln -s "deep/$long/$long/$long" "links/$(printf 'L%.0s' $(seq 1 110))"
ln "deep/$long/$long/$long/$(printf 'f%.0s' $(seq 1 120))" links/hard-to-long

# Devices and a FIFO.
mkdir -p dev
mknod dev/null c 1 3; chmod 666 dev/null
mknod dev/loop200 b 7 200; chown 0:6 dev/loop200; chmod 660 dev/loop200
mkfifo dev/fifo; chmod 620 dev/fifo

# Sparse files: many regions (old GNU needs extension headers), a big hole.
mkdir -p sparse
truncate -s 20M sparse/many
for i in 0 1 2 3 4 5 6 7 8 9; do
    printf "region $i" | dd of=sparse/many bs=1 seek=$((i * 2000000 + 4096 * i)) conv=notrunc status=none
done
truncate -s 64M sparse/hole-then-data
printf tail | dd of=sparse/hole-then-data bs=1 seek=$((64 * 1048576 - 4)) conv=notrunc status=none

# xattrs on every kind that can carry them; a file capability (cap_net_raw+ep,
# VFS_CAP_REVISION_2) set last because chown clears it.
setfattr -n user.note -v "file note" one
setfattr -n user.bin -v 0x00ff00ff b511
setfattr -n 'user.with=equals%pct' -v x b512
setfattr -n user.dir -v yes dirs/setgid
setfattr -n trusted.dev -v t dev/null
setfattr -n trusted.fifo -v f dev/fifo
setfattr -h -n trusted.link -v l links/rel
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 dirs/sgid

# POSIX ACLs: access ACLs with named entries, a default ACL that children
# inherit, an ACL on a device.
setfacl -m u:1234:rw-,g:4321:r-- b513
mkdir -p acl/inherit
setfacl -m u:1234:rwx -d -m u:1234:r-x,g:100:r-x acl/inherit
printf child > acl/inherit/child
mkdir acl/inherit/subdir
setfacl -m g:6:rw- dev/loop200

# Times: sub-second, old, in the future; directories and symlinks too.
touch -d '1985-10-26 01:21:00.123456789' one
touch -d '2038-01-20 00:00:00' b511
touch -d '@1700000000.5' random.bin
touch -h -d '2001-02-03 04:05:06.7' links/rel links/abs
for d in $(find . -depth -type d); do touch -d '2020-02-02 02:02:02.020202020' "$d"; done
touch -d '1999-12-31 23:59:59' dirs/ro

cd "$out"
tar_opts=(--numeric-owner -C "$t")
tar --format=gnu -S "${tar_opts[@]}" -cpf gnu.tar .
tar --format=posix --sparse-version=1.0 -S --xattrs --xattrs-include='*' --acls "${tar_opts[@]}" -cpf posix.tar .
tar --format=posix --sparse-version=0.0 -S --xattrs --xattrs-include='*' --acls "${tar_opts[@]}" -cpf posix-sparse00.tar .
tar --format=posix --sparse-version=0.1 -S --xattrs --xattrs-include='*' --acls "${tar_opts[@]}" -cpf posix-sparse01.tar .
zstd -q -19 -f posix.tar -o posix.tar.zst
head -c 1000000 posix.tar | zstd -q -f - -o posix-pzstd.tar.zst
tail -c +1000001 posix.tar | zstd -q >> posix-pzstd.tar.zst
pigz -q -c -b 128 posix.tar > posix.tar.gz
xz -q -T2 -c posix.tar > posix.tar.xz
bzip2 -q -c posix.tar > posix.tar.bz2
ls "$out"
