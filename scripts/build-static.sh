#!/usr/bin/env bash
# Builds the static release binaries:
#   aarch64-unknown-linux-musl  the product (runs on the Jetson, from the initramfs)
#   x86_64-unknown-linux-musl   the same code for tests on the build host
# checks that both are statically linked, prints their sizes and fails when
# the aarch64 binary is over its budget (issue 7: 3 MiB).
#
# Usage: scripts/build-static.sh [--target aarch64|x86_64|all] [--no-setup]
#   Binaries end up in $CARGO_TARGET_DIR/<triple>/release/sysinstall
#   (CARGO_TARGET_DIR defaults to ./target). The last lines of output are
#   "size <triple> <bytes>" for scripts.
#
# The C crates (zstd-sys, liblzma-sys) need musl cross C compilers. Unless
# --no-setup is given, missing ones are installed with apt when we are root
# (the same commands as tests/setup.sh): dpkg --add-architecture arm64,
# musl-tools, gcc-aarch64-linux-gnu, musl-dev:arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

AARCH64_BUDGET=$((3 * 1024 * 1024))
targets=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
setup=1
while (($#)); do
    case "$1" in
        --target)
            case "${2:-}" in
                aarch64) targets=(aarch64-unknown-linux-musl) ;;
                x86_64) targets=(x86_64-unknown-linux-musl) ;;
                all) ;;
                *) echo "build-static: --target takes aarch64, x86_64 or all" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --no-setup) setup=0; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "build-static: unknown argument $1" >&2; exit 2 ;;
    esac
done

need_cc() {   # triple -> the musl C compiler wrapper cc-rs will look for
    case "$1" in
        aarch64-unknown-linux-musl) echo aarch64-linux-musl-gcc ;;
        x86_64-unknown-linux-musl) echo x86_64-linux-musl-gcc ;;
    esac
}

missing_pkgs=()
for t in "${targets[@]}"; do
    command -v "$(need_cc "$t")" >/dev/null && continue
    case "$t" in
        aarch64-*) missing_pkgs+=(gcc-aarch64-linux-gnu musl-dev:arm64) ;;
        x86_64-*) missing_pkgs+=(musl-tools) ;;
    esac
done
if ((${#missing_pkgs[@]})); then
    if ((setup)) && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build-static: installing ${missing_pkgs[*]}" >&2
        # shellcheck source=debs.sh
        . "$(dirname "$0")/debs.sh"
        deb_ensure_arch arm64
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            musl-tools "${missing_pkgs[@]}" >/dev/null
    else
        echo "build-static: missing C cross compilers (packages: ${missing_pkgs[*]});" \
             "run as root without --no-setup, or run tests/setup.sh" >&2
        exit 1
    fi
fi

if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed)
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
fi

target_dir=${CARGO_TARGET_DIR:-target}
status=0
for t in "${targets[@]}"; do
    echo "== cargo build --release --target $t" >&2
    cargo build --release --locked --target "$t" --bin sysinstall
done
for t in "${targets[@]}"; do
    bin="$target_dir/$t/release/sysinstall"
    desc=$(file -b "$bin")
    # x86_64 builds are static-pie ("static-pie linked"), aarch64 plain static.
    if ! grep -Eq 'statically linked|static-pie linked' <<<"$desc"; then
        echo "build-static: $bin is not statically linked: $desc" >&2
        status=1
    fi
    size=$(stat -c %s "$bin")
    awk -v t="$t" -v s="$size" -v b="$bin" \
        'BEGIN { printf "%-28s %9d bytes (%.2f MiB)  %s\n", t, s, s / 1048576, b }'
    if [ "$t" = aarch64-unknown-linux-musl ] && ((size > AARCH64_BUDGET)); then
        echo "build-static: $bin is $size bytes, over the budget of $AARCH64_BUDGET (3 MiB)" >&2
        status=1
    fi
done
for t in "${targets[@]}"; do
    echo "size $t $(stat -c %s "$target_dir/$t/release/sysinstall")"
done
exit $status
