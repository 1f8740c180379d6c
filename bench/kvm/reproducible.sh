#!/usr/bin/env bash
# Two builds of one commit, in two different directories, must give the same kvm launch
# measurement: clones HEAD twice, builds `ward` + `ward-keep` in each (debug profile,
# paths remapped so the checkout location does not leak into the binaries), and
# compares `ward measure --backend kvm`. Offline: no /dev/kvm needed. Takes two full
# builds (about 5-10 minutes on 2 cores).
# Usage: bench/kvm/reproducible.sh [PROFILE]   (debug or release; default debug)
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=${1:-debug}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
for n in a b; do
  git clone -q . "$WORK/$n"
  (
    cd "$WORK/$n"
    export CARGO_TARGET_DIR="$WORK/$n/target"
    # RUSTFLAGS replaces .cargo/config.toml's rustflags: keep its crt-static.
    export RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$WORK/$n=/ward --remap-path-prefix=$CARGO_HOME=/cargo"
    echo "building $n ($(git rev-parse --short HEAD), $PROFILE)..." >&2
    nice cargo build -q --locked "${flag[@]}" -p ward-cli -p ward-keep
    "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/$PROFILE/ward" measure --backend kvm > "$WORK/$n.m"
    sha384sum "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/$PROFILE/ward-keep" | cut -d' ' -f1 > "$WORK/$n.bin"
  )
done
printf '%-8s %-98s %s\n' build "kvm measurement (ward measure --backend kvm)" "ward-keep file SHA-384 (first 16)"
for n in a b; do printf '%-8s %-98s %s\n' "$n" "$(cat "$WORK/$n.m")" "$(head -c 16 "$WORK/$n.bin")"; done
if cmp -s "$WORK/a.m" "$WORK/b.m"; then echo "reproducible: yes"; else echo "reproducible: NO"; exit 1; fi
