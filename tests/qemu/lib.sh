# shellcheck shell=bash
# Helpers of the qemu tier: the Debian kernel, images, booting, console logs.
# Sourced by tests/qemu/run.sh.

# shellcheck source=../../scripts/debs.sh
. "$repo/scripts/debs.sh"

# Fetches and unpacks Debian's current arm64 kernel into the cache (keyed by
# package name and version) and prints the unpacked root; depmod is run
# because the .deb ships no modules.dep.
qemu_kernel() {
    local arch=$1 meta pkg version root deb
    meta="linux-image-$arch:$arch"
    pkg=$(apt-cache depends "$meta" 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ { sub(/:.*/, "", $2); print $2; exit }')
    if [ -z "$pkg" ]; then   # offline: the newest cached kernel
        root=$(ls -1d "$debs_cache"/kernel/linux-image-*-"$arch"_* 2>/dev/null | sort -V | tail -n 1)
        [ -n "$root" ] && { echo "$root"; return 0; }
        echo "qemu: cannot resolve $meta (apt lists for $arch missing?) and no kernel cached" >&2
        return 1
    fi
    version=$(deb_version "$pkg:$arch")
    root=$debs_cache/kernel/${pkg}_${version//:/%3a}
    if [ ! -f "$root/.complete" ]; then
        deb=$(deb_fetch "$pkg:$arch") || return 1
        rm -rf "$root"
        mkdir -p "$root"
        dpkg-deb -x "$deb" "$root"
        depmod -b "$root" "${pkg#linux-image-}"
        touch "$root/.complete"
    fi
    echo "$root"
}
