#!/usr/bin/env bash
# Lints the layer's recipes, class and includes with oelint-adv (PyPI),
# installed into a private virtualenv (cached), after checking that
# sysinstall-crates.inc matches Cargo.lock.
# Usage: yocto/scripts/oelint.sh    (exit status 0 = no findings)
set -euo pipefail
layer=$(cd "$(dirname "$0")/.." && pwd)
venv=${SYSINSTALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sysinstall}/oelint-venv
if [ ! -x "$venv/bin/oelint-adv" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "oelint-adv>=9,<10"
fi
python3 "$layer/scripts/update-crates-inc.py" --check

# Suppressed everywhere, with the reason:
suppress=(
    # The project has no public bug tracker and no CVE product name of its own.
    oelint.var.suggestedvar.BUGTRACKER
    oelint.var.suggestedvar.CVE_PRODUCT
    # CI reaches no host but the package registries; HOMEPAGE is set by the user.
    oelint.vars.homepageping
)
# Line-level suppressions (# nooelint: ...) in the files say why at each place.
args=()
for s in "${suppress[@]}"; do args+=(--suppress "$s"); done

cd "$layer"
mapfile -t files < <(find . \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' -o -name '*.inc' \) | sort)
echo "oelint: $("$venv/bin/oelint-adv" --version) on ${#files[@]} files"
out=$("$venv/bin/oelint-adv" --quiet --relpaths --release scarthgap --mode all "${args[@]}" "${files[@]}" 2>&1) || {
    echo "$out"
    echo "oelint: findings above" >&2
    exit 1
}
[ -z "$out" ] || { echo "$out"; exit 1; }
echo "oelint: no findings"
