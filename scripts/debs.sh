# shellcheck shell=bash
# Debian packages for the initramfs, the rootfs fixtures and the qemu tier:
# downloaded with `apt-get download` (never installed), cached by
# name/version/architecture, unpacked with `dpkg-deb -x`.
#
# Source this file; it defines:
#   debs_cache              the cache root (SYSINSTALL_CACHE, default ~/.cache/sysinstall)
#   deb_ensure_arch ARCH    dpkg --add-architecture ARCH + apt-get update, when needed and root
#   deb_version PKG:ARCH    the candidate version apt would download ("" when unknown)
#   deb_fetch PKG:ARCH      prints the path of the cached .deb, downloading it first if needed
#   deb_depends PKG:ARCH    prints the package's direct Pre-Depends/Depends, one PKG:ARCH a line
#   deb_unpack PKG:ARCH DIR unpacks the package's files into DIR
#
# Offline (no apt lists for ARCH, or no network) the newest cached .deb of a
# package is used, so a warm cache is enough to rebuild everything.

debs_cache=${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}

deb_log() { echo "debs: $*" >&2; }

deb_ensure_arch() {
    local arch=$1
    [ "$arch" = "$(dpkg --print-architecture)" ] && return 0
    dpkg --print-foreign-architectures | grep -qx "$arch" && return 0
    if [ "$(id -u)" != 0 ]; then
        deb_log "architecture $arch is not configured for apt and we are not root;" \
                "run: dpkg --add-architecture $arch && apt-get update"
        return 1
    fi
    deb_log "adding architecture $arch"
    dpkg --add-architecture "$arch" && apt-get update -qq
}

deb_version() {
    # awk reads to the end: exiting early would kill apt-cache with SIGPIPE,
    # and under pipefail (mkrootfs.sh) a found version would count as failed.
    apt-cache policy "$1" 2>/dev/null |
        awk '/Candidate:/ && !v { if ($2 != "(none)") v = $2 } END { if (v) print v }'
}

# The file name apt-get download gives a package: the epoch's ':' becomes %3a.
deb_file_name() {   # NAME VERSION ARCH
    printf '%s_%s_%s.deb' "$1" "${2//:/%3a}" "$3"
}

deb_fetch() {
    local spec=$1 name=${1%%:*} arch=${1#*:} version file dir
    [ "$name" = "$spec" ] && arch=$(dpkg --print-architecture)
    dir="$debs_cache/debs"
    mkdir -p "$dir"
    version=$(deb_version "$name:$arch")
    if [ -z "$version" ] && [ "$arch" != all ]; then
        # Architecture-independent packages (tzdata, ...) are only known as :all.
        version=$(deb_version "$name:all") && [ -n "$version" ] && arch=all
    fi
    if [ -n "$version" ]; then
        file="$dir/$(deb_file_name "$name" "$version" "$arch")"
        if [ ! -s "$file" ]; then
            deb_log "downloading $name:$arch $version"
            # As root, apt's _apt sandbox user cannot write into a cache under /root.
            local sandbox=()
            [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
            (cd "$dir" && apt-get download -qq "${sandbox[@]}" "$name:$arch=$version" >/dev/null) || {
                deb_log "apt-get download $name:$arch=$version failed"; return 1; }
        fi
    else
        # No apt metadata: fall back to the newest cached copy.
        file=$(ls -1 "$dir/${name}_"*"_$arch.deb" 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$file" ]; then
            deb_log "no version of $name:$arch known to apt and none cached in $dir"
            return 1
        fi
        deb_log "apt knows no $name:$arch; using cached $(basename "$file")"
    fi
    printf '%s\n' "$file"
}

deb_depends() {
    local spec=$1 arch=${1#*:}
    [ "$arch" = "$1" ] && arch=$(dpkg --print-architecture)
    # Alternatives ("|Depends:") count as their first choice; virtual packages
    # ("<name>") cannot be downloaded and are skipped.
    apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "$spec" 2>/dev/null |
        awk -v arch="$arch" '
            /^ *\|?(Pre)?Depends:/ {
                pkg = $2
                if (pkg ~ /^</) next
                sub(/:.*/, "", pkg)
                if (!seen[pkg]++) print pkg ":" arch
            }'
}

deb_unpack() {
    local deb
    deb=$(deb_fetch "$1") || return 1
    mkdir -p "$2"
    dpkg-deb -x "$deb" "$2"
}
