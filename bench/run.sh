#!/usr/bin/env bash
# Benchmark for `ward run` (process backend). From one run, prints medians of:
#   - the CPU-bound example: native vs `ward run` vs a peer (the wasmtime CLI, if
#     installed), with ratios;
#   - cold start of `ward run examples/hello.wasm`.
# Usage: bench/run.sh [RUNS]   (env: WARD=path/to/ward, ROUNDS=cpubench rounds,
#                               PEER=path/to/wasmtime)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
ROUNDS=${ROUNDS:-10000}
WARD=${WARD:-target/x86_64-unknown-linux-gnu/release/ward}
PEER=${PEER:-$(command -v wasmtime || echo /opt/wasmtime-peer/bin/wasmtime)}

[ -x "$WARD" ] || { echo "bench: $WARD not built; run: cargo build --release -p ward-cli -p ward-keep" >&2; exit 1; }
examples/build.sh

python3 - "$RUNS" "$ROUNDS" "$WARD" "$PEER" <<'PY'
import os, statistics, subprocess, sys, time
runs, rounds, ward, peer = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
have_peer = os.access(peer, os.X_OK)

def time_cmd(cmd, expect=None):
    samples = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()}")
        out = p.stdout
    if expect is not None and out.split(b"checksum")[-1] != expect.split(b"checksum")[-1]:
        sys.exit(f"bench: {' '.join(cmd)} printed a different checksum")
    return statistics.median(samples), min(samples), max(samples), out

print(f"ward run benchmark: {runs} runs each, medians (min..max), cpubench {rounds} rounds")
print(f"ward: {ward}")
native = time_cmd(["examples/cpubench.native", rounds])
wardr = time_cmd([ward, "run", "-q", "examples/cpubench.wasm", "--", rounds], native[3])
rows = [("native (clang -O2)", native), ("ward run --backend process", wardr)]
if have_peer:
    rows.append((f"peer: wasmtime run", time_cmd([peer, "run", "examples/cpubench.wasm", rounds], native[3])))
print()
print(f"{'cpubench':<30} {'median ms':>10} {'min..max ms':>16} {'vs native':>10} {'vs peer':>9}")
peer_med = rows[2][1][0] if have_peer else None
for name, (med, lo, hi, _) in rows:
    vs_peer = f"{med / peer_med:.2f}x" if peer_med else "n/a"
    print(f"{name:<30} {med:>10.1f} {f'{lo:.1f}..{hi:.1f}':>16} {med / native[0]:>9.2f}x {vs_peer:>9}")
if not have_peer:
    print(f"peer: none ({peer} not found; `cargo install wasmtime-cli --version 48.0.8 --locked`)")

print()
cold = time_cmd([ward, "run", "-q", "examples/hello.wasm"])
rows = [("ward run hello.wasm", cold)]
if have_peer:
    rows.append(("peer: wasmtime run hello.wasm", time_cmd([peer, "run", "examples/hello.wasm"])))
print(f"{'cold start':<30} {'median ms':>10} {'min..max ms':>16}")
for name, (med, lo, hi, _) in rows:
    print(f"{name:<30} {med:>10.1f} {f'{lo:.1f}..{hi:.1f}':>16}")
PY
