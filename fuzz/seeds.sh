#!/usr/bin/env bash
# Builds the seed corpora in fuzz/corpus/<target>/ (not committed): the
# sample layouts of tests/data/flash-layouts and layouts/,
# plus what make-seeds generates with the project's own code (CSVs and GPT
# images of those layouts, GPT headers and entry arrays, journal records, a
# site config, OCI manifests, challenges, references and proxy settings),
# plus real filesystem heads made by mke2fs/mkswap.
#
# Usage: fuzz/seeds.sh            (idempotent; existing corpus files are kept)
set -euo pipefail
fuzz="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$fuzz")"
corpus="$fuzz/corpus"
samples="$repo/tests/data/flash-layouts"
export CARGO_TARGET_DIR="${FUZZ_SEEDS_TARGET_DIR:-${FUZZ_TARGET_DIR:-$repo/target/fuzz}/seeds}"

mkdir -p "$corpus"/{layout_xml,layout_csv,gpt_structs,gpt_read,journal,probe,site_config,tar_entries}

layouts=("$repo"/layouts/*.xml "$samples"/*.xml)
cp "$samples"/*.partition_table "$corpus/layout_csv/"
cp "${layouts[@]}" "$corpus/layout_xml/"

cargo run -q --release --manifest-path "$fuzz/Cargo.toml" --no-default-features \
    --features seeds --bin make-seeds -- "$corpus" "${layouts[@]}"

# Filesystem heads (the first 8 KiB, what probe::identify reads).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
head8k() { head -c 8192 "$1" > "$corpus/probe/$2"; }
for kind in ext2 ext3 ext4; do
    if command -v mke2fs >/dev/null; then
        truncate -s 4M "$tmp/$kind.img"
        mke2fs -q -F -t "$kind" -L APP_b -M /mnt/seed "$tmp/$kind.img" >/dev/null
        head8k "$tmp/$kind.img" "$kind"
    fi
done
if command -v mkswap >/dev/null; then
    truncate -s 1M "$tmp/swap.img"
    chmod 600 "$tmp/swap.img"
    mkswap "$tmp/swap.img" >/dev/null 2>&1
    head8k "$tmp/swap.img" swap
fi
if command -v mkfs.vfat >/dev/null; then
    truncate -s 4M "$tmp/vfat.img"
    mkfs.vfat "$tmp/vfat.img" >/dev/null
    head8k "$tmp/vfat.img" vfat
fi
head -c 8192 /dev/zero > "$corpus/probe/zeros"

# Tarballs from GNU tar: plain, ustar/gnu/posix formats, sparse, long names,
# symlinks (relative, absolute, climbing), a hard link, xattrs.
if command -v tar >/dev/null; then
    t="$tmp/tree"
    mkdir -p "$t/etc/deep/$(printf 'd%.0s' {1..120})"
    echo hello > "$t/etc/hostname"
    ln -s ../etc/hostname "$t/etc/rel"; ln -s /etc/passwd "$t/etc/abs"; ln -s ../../../x "$t/etc/climb"
    ln "$t/etc/hostname" "$t/etc/hard"
    truncate -s 1M "$t/sparse"; echo data | dd of="$t/sparse" bs=1 seek=600000 conv=notrunc status=none
    setfattr -n user.seed -v 1 "$t/etc/hostname" 2>/dev/null || true
    for fmt in ustar gnu posix; do
        tar -C "$t" --format=$fmt -S --xattrs -cf "$corpus/tar_entries/$fmt.tar" . 2>/dev/null || true
    done
fi

# bmap files from bmap-tools' own bmaptool: a sparse file with a few blocks.
if command -v bmaptool >/dev/null; then
    mkdir -p "$corpus/bmap"
    truncate -s 1M "$tmp/disk.img"
    for at in 0 5 200; do echo "block $at" | dd of="$tmp/disk.img" bs=4096 seek=$at conv=notrunc status=none; done
    bmaptool -q create -o "$corpus/bmap/small.bmap" "$tmp/disk.img"
fi

for d in "$corpus"/*/; do
    printf 'seeds: %-12s %4d files\n' "$(basename "$d")" "$(find "$d" -type f | wc -l)"
done
