#!/usr/bin/env bash
# What an Ed25519 signature check would cost the static binary (docs/security.md):
# builds this tree's HEAD as is and with each candidate crate really verifying
# a signature (openssl-made key, manifest and signature; a tampered manifest
# must be refused), and prints the stripped sizes and the verification time.
#
# Usage: benches/signature-size.sh [TRIPLE...]   (default: aarch64 and x86_64 musl)
# Takes a few minutes per build; scratch files go to $SIG_BENCH_DIR
# (default /tmp/sysinstall-sig-bench).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${SIG_BENCH_DIR:-/tmp/sysinstall-sig-bench}"
triples=("$@")
[ ${#triples[@]} -gt 0 ] || triples=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
mkdir -p "$work/vec"
rm -rf "$work/pristine" && mkdir "$work/pristine"
git -C "$repo" archive HEAD | tar -x -C "$work/pristine"

# Test vector: key, manifest, signature.
cd "$work/vec"
openssl genpkey -algorithm ed25519 -out key.pem
openssl pkey -in key.pem -pubout -outform DER | tail -c 32 > pk
printf 'sysinstall-manifest 1\nrootfs image.tar.zst 1 sha256:%064d\n' 0 > manifest
openssl pkeyutl -sign -inkey key.pem -rawin -in manifest -out sig

DALEK='fn sig_probe(dir: &std::path::Path) -> u8 {
    use ed25519_dalek::{Signature, VerifyingKey};
    let rd = |n: &str| std::fs::read(dir.join(n)).unwrap_or_default();
    let (pk, sig, msg) = (rd("pk"), rd("sig"), rd("manifest"));
    let Ok(pk) = <[u8; 32]>::try_from(pk.as_slice()) else { return 2 };
    let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else { return 2 };
    let Ok(key) = VerifyingKey::from_bytes(&pk) else { return 2 };
    let t = std::time::Instant::now();
    let ok = (0..1000).all(|_| key.verify_strict(&msg, &Signature::from_bytes(&sig)).is_ok());
    eprintln!("verify: {:?} each", t.elapsed() / 1000);
    if ok { 0 } else { 1 }
}'
COMPACT='fn sig_probe(dir: &std::path::Path) -> u8 {
    use ed25519_compact::{PublicKey, Signature};
    let rd = |n: &str| std::fs::read(dir.join(n)).unwrap_or_default();
    let (pk, sig, msg) = (rd("pk"), rd("sig"), rd("manifest"));
    let (Ok(key), Ok(sig)) = (PublicKey::from_slice(&pk), Signature::from_slice(&sig)) else { return 2 };
    let t = std::time::Instant::now();
    let ok = (0..1000).all(|_| key.verify(&msg, &sig).is_ok());
    eprintln!("verify: {:?} each", t.elapsed() / 1000);
    if ok { 0 } else { 1 }
}'

variant() {
    local name="$1" dep="$2" code="$3" src="$work/src-$1"
    rm -rf "$src" && cp -r "$work/pristine" "$src"
    if [ -n "$dep" ]; then
        sed -i "s|^\[dependencies\]|[dependencies]\n$dep|" "$src/Cargo.toml"
        python3 - "$src/src/main.rs" "$code" <<'PY'
import sys
p, code = sys.argv[1], sys.argv[2]
s = open(p).read()
hook = '\n    if let Some(p) = std::env::var_os("SIG_PROBE") {\n        return ExitCode::from(sig_probe(std::path::Path::new(&p)));\n    }'
s = s.replace("fn main() -> ExitCode {", code + "\nfn main() -> ExitCode {" + hook, 1)
open(p, "w").write(s)
PY
    fi
    for triple in "${triples[@]}"; do
        local t0=$SECONDS bin="$work/target-$name/$triple/release/sysinstall"
        (cd "$src" && CARGO_TARGET_DIR="$work/target-$name" cargo build -q --release --target "$triple")
        local extra=""
        if [ -n "$dep" ] && [ "$triple" = "$(rustc -vV | sed -n 's/^host: //p' | sed 's/gnu$/musl/')" ]; then
            extra="$(SIG_PROBE="$work/vec" "$bin" 2>&1 | tail -1)"
            cp "$work/vec/manifest" "$work/vec/m.orig"; printf X >> "$work/vec/manifest"
            if SIG_PROBE="$work/vec" "$bin" 2>/dev/null; then extra="$extra TAMPERED ACCEPTED"; fi
            mv "$work/vec/m.orig" "$work/vec/manifest"
        fi
        printf '%-8s %-28s %9d bytes  build %3d s  %s\n' "$name" "$triple" "$(stat -c %s "$bin")" $((SECONDS - t0)) "$extra"
    done
}

variant none "" ""
variant dalek2 'ed25519-dalek = { version = "2.2", default-features = false, features = ["fast", "std"] }' "$DALEK"
variant dalek3 'ed25519-dalek = { version = "3", default-features = false, features = ["fast"] }' "$DALEK"
variant compact 'ed25519-compact = { version = "2.6", default-features = false }' "$COMPACT"
