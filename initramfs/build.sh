#!/usr/bin/env bash
# Assembles the upgrader initramfs: a compressed newc cpio holding
#   /init                     initramfs/init (mounts, modules, payload, console)
#   /bin/sysinstall           the static product binary
#   /bin/busybox              static busybox (Debian busybox-static), applets linked at boot;
#                             with --busybox-applets, Debian's dynamic busybox and links for
#                             exactly the listed applets
#   /sbin/{mke2fs,e2fsck,tune2fs,resize2fs}, /usr/bin/{chattr,lsattr} from Debian's
#                             e2fsprogs, /sbin/{mkfs.fat,fsck.fat} (and their
#                             .vfat names) from dosfstools, /sbin/cryptsetup
#                             from cryptsetup-bin (crypt- partitions), with exactly the
#                             shared libraries their ELF NEEDED entries name
#                             (transitively) and the dynamic loader
#   /lib/modules/KVER/...     the kernel modules of --modules and their dependencies
#   /etc/sysinstall/modules   the insmod order
# The userland comes from Debian .debs (apt-get download + dpkg-deb -x, cached,
# see scripts/debs.sh); nothing is installed on the build host.
#
# Usage: initramfs/build.sh [options]
#   --arch ARCH           Debian architecture: arm64 (the product, default) or amd64
#   --sysinstall FILE     static sysinstall for ARCH
#                         (default $CARGO_TARGET_DIR/<triple>/release/sysinstall)
#   --output FILE         default build/initramfs/sysinstall-initramfs-ARCH.cpio.{gz,zst}
#   --compress gzip|zstd  default gzip: every kernel decompresses it, including
#                         L4T R32's 4.9 (RD_ZSTD only exists from Linux 5.9)
#   --kernel-root DIR     an unpacked kernel package (DIR/lib/modules/KVER) to take modules from
#   --kver VERSION        which KVER (default: the only one in DIR/lib/modules)
#   --modules FILE        module names to load, in order; their modules.dep
#                         dependencies are added before them (default
#                         initramfs/modules/ARCH.list when --kernel-root is given)
#   --overlay DIR         files copied over the tree last (repeatable; tests add hooks)
#   --budget BYTES        fail when the compressed image is larger (default 8 MiB)
#   --cryptsetup          add cryptsetup (about 2.9 MiB compressed, most of it
#                         OpenSSL's libcrypto), for layouts with crypt- partitions;
#                         without it sysinstall refuses those (tool_missing). Off by
#                         default, as in the Yocto recipe (SYSINSTALL_INITRAMFS_CRYPTSETUP):
#                         with busybox-static and kernel modules it would not fit 8 MiB
#   --no-cryptsetup       leave it out (the default)
#   --busybox-applets FILE  only these applets (one a line, # comments), as OE's busybox
#                         package has them (initramfs/busybox-oe.applets): Debian's
#                         dynamically linked busybox, which unlike busybox-static runs no
#                         applet that has no link, so /init fails where OE's would
# Prints the size of each part and the total; the last line is
# "initramfs FILE COMPRESSED_BYTES".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=../scripts/debs.sh
. "$repo/scripts/debs.sh"

arch=arm64 sysinstall="" output="" compress=gzip kernel_root="" kver="" modules="" applets="" cryptsetup=0
budget=$((8 * 1024 * 1024))
overlays=()
die() { echo "initramfs: $*" >&2; exit 1; }
while (($#)); do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --sysinstall) sysinstall=$2; shift 2 ;;
        --output) output=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        --kernel-root) kernel_root=$2; shift 2 ;;
        --kver) kver=$2; shift 2 ;;
        --modules) modules=$2; shift 2 ;;
        --overlay) overlays+=("$2"); shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --busybox-applets) applets=$2; shift 2 ;;
        --cryptsetup) cryptsetup=1; shift ;;
        --no-cryptsetup) cryptsetup=0; shift ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

case "$arch" in
    arm64) triple=aarch64-unknown-linux-musl gnu=aarch64-linux-gnu elf_machine=AArch64 ;;
    amd64) triple=x86_64-unknown-linux-musl gnu=x86_64-linux-gnu elf_machine=X86-64 ;;
    *) die "--arch must be arm64 or amd64" ;;
esac
case "$compress" in
    gzip) ext=gz ;;
    zstd) ext=zst ;;
    *) die "--compress must be gzip or zstd" ;;
esac
sysinstall=${sysinstall:-${CARGO_TARGET_DIR:-$repo/target}/$triple/release/sysinstall}
output=${output:-$repo/build/initramfs/sysinstall-initramfs-$arch.cpio.$ext}
[ -f "$sysinstall" ] || die "$sysinstall does not exist: run scripts/build-static.sh first"
[ -z "$applets" ] || [ -f "$applets" ] || die "--busybox-applets $applets does not exist"
if [ -n "$kernel_root" ] && [ -z "$modules" ]; then
    modules=$here/modules/$arch.list
fi

# An ELF's machine and whether it has a program interpreter (= is dynamic).
elf_machine() { readelf -h "$1" | awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }'; }
elf_interp() { readelf -l "$1" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p'; }
elf_needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
check_static() {   # FILE WHAT
    local m
    m=$(elf_machine "$1")
    case "$m" in *"$elf_machine"*) ;; *) die "$2 ($1) is built for '$m', not $arch" ;; esac
    [ -z "$(elf_interp "$1")" ] || die "$2 ($1) is dynamically linked; it must be static"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,etc/sysinstall,proc,sys,dev,run,tmp,mnt,root}
chmod 1777 "$root/tmp"

declare -A size_of   # part -> bytes, for the report
add_size() { size_of[$1]=$(( ${size_of[$1]:-0} + $(stat -c %s "$2") )); }

# --- sysinstall ------------------------------------------------------------
check_static "$sysinstall" sysinstall
install -m 0755 "$sysinstall" "$root/bin/sysinstall"
add_size sysinstall "$sysinstall"

# --- busybox ---------------------------------------------------------------
deb_ensure_arch "$arch"
sysroot=$work/sysroot
if [ -z "$applets" ]; then
    deb_unpack "busybox-static:$arch" "$work/busybox"
    check_static "$work/busybox/bin/busybox" busybox
    install -m 0755 "$work/busybox/bin/busybox" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    busybox_kind=busybox-static
else
    # Its libraries are resolved with e2fsprogs' below.
    deb_unpack "busybox:$arch" "$sysroot"
    install -m 0755 "$sysroot/bin/busybox" "$root/bin/busybox"
    n=0
    while read -r a _; do
        case "$a" in ""|"#"*|busybox|*/*) continue ;; esac
        ln -s busybox "$root/bin/$a"
        n=$((n + 1))
    done <"$applets"
    [ -e "$root/bin/sh" ] || die "$applets has no sh"
    busybox_kind="busybox (dynamic; $n applets of $(basename "$applets"))"
fi
add_size busybox "$root/bin/busybox"

# --- e2fsprogs, dosfstools and cryptsetup with the libraries they need ---------
# Unpack the packages and their direct dependencies; go one level deeper only
# while some NEEDED soname is still not found (data-driven, no hand list).
# chattr/lsattr: efivarfs marks UEFI variables immutable, and clearing that
# flag is the documented manual step on an Orin. mkfs.fat: the ESP of an Orin
# user device (sysinstall runs mkfs.vfat). cryptsetup: the LUKS2 containers of
# crypt- partitions (its libraries bring OpenSSL's libcrypto, the largest part).
declare -A part_of=([sbin/mke2fs]=e2fsprogs [sbin/e2fsck]=e2fsprogs [sbin/tune2fs]=e2fsprogs
                    [sbin/resize2fs]=e2fsprogs
                    [usr/bin/chattr]=e2fsprogs [usr/bin/lsattr]=e2fsprogs
                    [sbin/mkfs.fat]=dosfstools [sbin/fsck.fat]=dosfstools
                    [sbin/cryptsetup]=cryptsetup)
tools=(sbin/mke2fs sbin/e2fsck sbin/tune2fs sbin/resize2fs usr/bin/chattr usr/bin/lsattr sbin/mkfs.fat sbin/fsck.fat)
elves=()   # ELF files whose libraries go in (paths in the sysroot)
for f in "${tools[@]}"; do elves+=("$sysroot/$f"); done
declare -A unpacked=()
frontier=("e2fsprogs:$arch" "dosfstools:$arch")
if ((cryptsetup)); then
    tools+=(sbin/cryptsetup)
    elves+=("$sysroot/sbin/cryptsetup")
    frontier+=("cryptsetup-bin:$arch")
fi
if [ -n "$applets" ]; then
    elves+=("$sysroot/bin/busybox")
    frontier+=("busybox:$arch")
fi
lib_dirs=("lib/$gnu" "usr/lib/$gnu" lib usr/lib)
find_lib() {   # SONAME -> path in the sysroot
    local d
    for d in "${lib_dirs[@]}"; do
        [ -e "$sysroot/$d/$1" ] && { echo "$sysroot/$d/$1"; return 0; }
    done
    return 1
}
resolve_libs() {   # prints "soname<TAB>path" for the closure; unresolved as "soname<TAB>"
    local queue=("${elves[@]}") f so p
    declare -A seen_so=()
    while ((${#queue[@]})); do
        f=${queue[0]}; queue=("${queue[@]:1}")
        for so in $(elf_needed "$f"); do
            [ -n "${seen_so[$so]:-}" ] && continue
            seen_so[$so]=1
            if p=$(find_lib "$so"); then
                printf '%s\t%s\n' "$so" "$p"
                queue+=("$(readlink -f "$p")")
            else
                printf '%s\t\n' "$so"
            fi
        done
    done
}
for level in 1 2 3 4 5 6; do
    next=()
    for pkg in "${frontier[@]}"; do
        [ -n "${unpacked[$pkg]:-}" ] && continue
        unpacked[$pkg]=1
        deb_unpack "$pkg" "$sysroot"
        mapfile -t deps < <(deb_depends "$pkg")
        next+=("${deps[@]}")
    done
    [ "$level" = 1 ] && { frontier=("${next[@]}"); continue; }
    resolved=$(resolve_libs)
    missing=$(awk -F'\t' '$2 == "" { print $1 }' <<<"$resolved")
    [ -z "$missing" ] && break
    [ "$level" = 6 ] && die "libraries not found in the unpacked packages: $missing"
    frontier=("${next[@]}")
done
resolved=${resolved:-$(resolve_libs)}
interp=$(elf_interp "$sysroot/sbin/mke2fs")
[ -n "$interp" ] || die "mke2fs has no program interpreter?"
for f in "${tools[@]}"; do
    install -m 0755 "$sysroot/$f" "$root/$f"
    add_size "${part_of[$f]}" "$root/$f"
done
ln -s mke2fs "$root/sbin/mkfs.ext4"
ln -s e2fsck "$root/sbin/fsck.ext4"
ln -s tune2fs "$root/sbin/e2label"
ln -s mkfs.fat "$root/sbin/mkfs.vfat"
ln -s fsck.fat "$root/sbin/fsck.vfat"
install -m 0644 "$sysroot/etc/mke2fs.conf" "$root/etc/mke2fs.conf"
mkdir -p "$root/lib/$gnu"
while IFS=$'\t' read -r so path; do
    # libc names the loader as NEEDED too; it is installed at its own path below.
    [ "$so" = "$(basename "$interp")" ] && continue
    install -m 0755 "$(readlink -f "$path")" "$root/lib/$gnu/$so"
    add_size libraries "$root/lib/$gnu/$so"
done <<<"$resolved"
mkdir -p "$root$(dirname "$interp")"
if [ ! -e "$root$interp" ]; then
    install -m 0755 "$(readlink -f "$sysroot$interp")" "$root$interp"
    add_size libraries "$root$interp"
fi
libs_list=$(cut -f1 <<<"$resolved" | sort | tr '\n' ' ')

# --- kernel modules ---------------------------------------------------------
: >"$root/etc/sysinstall/modules"
if [ -n "$kernel_root" ]; then
    if [ -z "$kver" ]; then
        mapfile -t kvers < <(ls -1 "$kernel_root/lib/modules")
        ((${#kvers[@]} == 1)) || die "--kver needed: $kernel_root/lib/modules has ${kvers[*]}"
        kver=${kvers[0]}
    fi
    mdir=$kernel_root/lib/modules/$kver
    [ -d "$mdir" ] || die "$mdir does not exist"
    [ -s "$mdir/modules.dep" ] || depmod -b "$kernel_root" "$kver"
    declare -A dep_of=() path_of=() loaded=()
    while IFS= read -r line; do
        mod=${line%%:*}
        name=$(basename "$mod"); name=${name%%.ko*}; name=${name//-/_}
        path_of[$name]=$mod
        dep_of[$mod]=${line#*:}
    done <"$mdir/modules.dep"
    order=()
    visit() {   # module path: dependencies first (depth first)
        local m=$1 d
        [ -n "${loaded[$m]:-}" ] && return 0
        loaded[$m]=1
        for d in ${dep_of[$m]}; do visit "$d"; done
        order+=("$m")
    }
    while read -r name _; do
        [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
        key=${name//-/_}
        [ -n "${path_of[$key]:-}" ] || die "module $name is not in $mdir/modules.dep"
        visit "${path_of[$key]}"
    done <"$modules"
    for m in "${order[@]}"; do
        dst=$root/lib/modules/$kver/${m%.xz}; dst=${dst%.zst}
        mkdir -p "$(dirname "$dst")"
        case "$m" in
            *.ko.xz) xz -dc "$mdir/$m" >"$dst" ;;
            *.ko.zst) zstd -qdc "$mdir/$m" >"$dst" ;;
            *) cp "$mdir/$m" "$dst" ;;
        esac
        add_size modules "$dst"
        rel=${m%.xz}; rel=${rel%.zst}
        echo "$kver/$rel" >>"$root/etc/sysinstall/modules"
    done
fi

# --- /init and its files ----------------------------------------------------
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/sysinstall/udhcpc.script"
cat >"$root/etc/sysinstall/build-info" <<INFO
sysinstall=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1) ($(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown))
busybox=$(dpkg-deb -f "$(deb_fetch "${busybox_kind%% *}:$arch")" Version) $busybox_kind
e2fsprogs=$(dpkg-deb -f "$(deb_fetch "e2fsprogs:$arch")" Version)
dosfstools=$(dpkg-deb -f "$(deb_fetch "dosfstools:$arch")" Version)
cryptsetup=$( ((cryptsetup)) && dpkg-deb -f "$(deb_fetch "cryptsetup-bin:$arch")" Version || echo none)
kernel=${kver:-none}
INFO
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
install -m 0644 "$here/profile" "$root/etc/sysinstall/profile"
for o in "${overlays[@]}"; do
    cp -a "$o/." "$root/"
done

# --- archive ----------------------------------------------------------------
mkdir -p "$(dirname "$output")"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
python3 "$here/mkcpio.py" "$root" "$work/initramfs.cpio" --node /dev/console:c:5:1 --node /dev/null:c:1:3:666
case "$compress" in
    gzip) gzip -9 -n -c "$work/initramfs.cpio" >"$output.tmp" ;;
    zstd) zstd -q -19 --check -c "$work/initramfs.cpio" >"$output.tmp" ;;
esac
mv "$output.tmp" "$output"

raw=$(stat -c %s "$work/initramfs.cpio")
packed=$(stat -c %s "$output")
echo "initramfs contents (uncompressed bytes):"
for part in sysinstall busybox e2fsprogs dosfstools cryptsetup libraries modules; do
    printf '  %-11s %9d\n' "$part" "${size_of[$part]:-0}"
done
echo "  libraries:  $libs_list(interpreter $interp)"
[ -n "$kver" ] && echo "  modules:    $(wc -l <"$root/etc/sysinstall/modules") for $kver"
awk -v r="$raw" -v p="$packed" -v c="$compress" -v b="$budget" 'BEGIN {
    printf "  cpio        %9d\n  %-11s %9d bytes (%.2f MiB, budget %.2f MiB)\n", r, c, p, p/1048576, b/1048576 }'
if ((packed > budget)); then
    die "$output is $packed bytes, over the budget of $budget"
fi
echo "initramfs $output $packed"
