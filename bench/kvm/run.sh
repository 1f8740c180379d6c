#!/usr/bin/env bash
# kvm Keep benchmarks: prints medians from one run of this script.
#  1. VM create -> first user-mode instruction (ms), with a tiny static guest;
#  2. `ward run --backend kvm hello.wasm` total vs `--backend process`;
#  3. the CPU-bound example: kvm vs process vs native.
# Usage: bench/kvm/run.sh [RUNS]   (default 5). Needs /dev/kvm; skips (exit 0) without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
T=x86_64-unknown-linux-gnu
if [ ! -w /dev/kvm ]; then echo "skipping: /dev/kvm not available"; exit 0; fi

nice cargo build -q --release -p ward-vmm --example kvm-run
nice cargo build -q --release -p ward-keep -p ward-cli
KVMRUN=$CARGO_TARGET_DIR/$T/release/examples/kvm-run
WARD=$CARGO_TARGET_DIR/$T/release/ward
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}}'; }
now_ms() { date +%s.%N | awk '{printf "%.3f\n", $1*1000}'; }
time_ms() { local t0 t1; t0=$(now_ms); "$@" >/dev/null 2>&1 || true; t1=$(now_ms); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", b-a}'; }

# 1. VM create -> first user instruction, and a whole trivial guest run.
printf 'fn main() {}\n' > "$WORK/empty.rs"
rustc -O -C target-feature=+crt-static "$WORK/empty.rs" -o "$WORK/empty" 2>/dev/null
for _ in $(seq "$RUNS"); do
  "$KVMRUN" --mem 64 "$WORK/empty" </dev/null 2>&1 | sed -n 's/.*first user instruction Some(\([0-9.]*\)\(m\?s\|µs\)).*/\1 \2/p' \
    | awk '{v=$1; if ($2=="s") v*=1000; if ($2=="µs") v/=1000; print v}'
done | median | xargs printf 'VM create -> first user-mode instruction (median of %s): %s ms\n' "$RUNS"

# 2. ward run hello.wasm, kvm vs process; 3. the CPU-bound example, kvm vs process vs native.
N=${CPUBENCH_N:-3000}
hello() { for _ in $(seq "$RUNS"); do time_ms "$WARD" run --backend "$1" examples/hello.wasm; done | median; }
cpu() { for _ in $(seq "$RUNS"); do time_ms "$WARD" run --backend "$1" --config examples/cpubench.toml examples/cpubench.wasm -- "$N"; done | median; }
H_P=$(hello process); H_K=$(hello kvm)
C_P=$(cpu process); C_K=$(cpu kvm)
C_N=n/a
if [ -x examples/cpubench.native ]; then
  C_N=$(for _ in $(seq "$RUNS"); do time_ms examples/cpubench.native "$N"; done | median)
fi
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && a+0 > 0) printf "%.2fx", a/b; else print "n/a" }'; }
echo
printf '%-44s %10s %12s %12s\n' "median of $RUNS" "ms" "vs process" "vs native"
printf '%-44s %10s %12s %12s\n' "ward run --backend process hello.wasm" "$H_P" "1.00x" "-"
printf '%-44s %10s %12s %12s\n' "ward run --backend kvm hello.wasm" "$H_K" "$(ratio "$H_K" "$H_P")" "-"
printf '%-44s %10s %12s %12s\n' "cpubench $N rounds, native" "$C_N" "-" "1.00x"
printf '%-44s %10s %12s %12s\n' "cpubench $N rounds, ward run --backend process" "$C_P" "1.00x" "$(ratio "$C_P" "$C_N")"
printf '%-44s %10s %12s %12s\n' "cpubench $N rounds, ward run --backend kvm" "$C_K" "$(ratio "$C_K" "$C_P")" "$(ratio "$C_K" "$C_N")"
