#!/usr/bin/env bash
# Benchmark for `ward run` (the process backend). From one run it prints a table of
# medians over N runs each:
#   (a) examples/cpubench: native (clang-14 -O2) vs `ward run examples/cpubench.wasm`
#       at the same round count, with the ratio (checksums must match);
#   (b) cold start: `ward run examples/hello.wasm`, process start to exit, in ms;
#   and the same against a peer runtime (the wasmtime CLI) if one is installed.
#
# Usage: bench/run.sh [N]
#   N        runs per command (default 7; also from $N)
#   WARD     the ward binary (default target/x86_64-unknown-linux-gnu/release/ward)
#   ROUNDS   cpubench rounds (default 3000, about 1 s natively)
#   PEER     a wasmtime CLI to compare with (default: `wasmtime` on PATH, if any)
#   TIMER    hyperfine | python (default: hyperfine if installed, else python)
#   BENCH_INSTALL=0  never apt-get install hyperfine (by default, as root, it is
#                    installed when missing)
# Timings are wall clock, on whatever else this machine is doing: the table prints the
# load average, and min..max shows the spread.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-${N:-7}}
ROUNDS=${ROUNDS:-3000}
WARD=${WARD:-target/x86_64-unknown-linux-gnu/release/ward}
PEER=${PEER:-$(command -v wasmtime || true)}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: N must be a positive count, not '$N'" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ ]] || { echo "bench/run.sh: ROUNDS must be a count, not '$ROUNDS'" >&2; exit 2; }
[ -x "$WARD" ] || {
  echo "bench/run.sh: $WARD is not built; run: cargo build --release -p ward-cli -p ward-keep (or set WARD=)" >&2
  exit 1
}

if [ -z "${TIMER:-}" ]; then
  if ! command -v hyperfine >/dev/null && [ "$(id -u)" -eq 0 ] && [ "${BENCH_INSTALL:-1}" != 0 ]; then
    echo "bench/run.sh: installing hyperfine (Debian package; BENCH_INSTALL=0 to skip)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null 2>&1 ||
      echo "bench/run.sh: could not install hyperfine; timing with a Python loop" >&2
  fi
  TIMER=python
  command -v hyperfine >/dev/null && TIMER=hyperfine
fi

examples/build.sh

exec python3 - "$N" "$ROUNDS" "$WARD" "$PEER" "$TIMER" <<'PY'
import json, os, shlex, statistics, subprocess, sys, tempfile, time

n, rounds, ward, peer, timer = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
have_peer = bool(peer) and os.access(peer, os.X_OK)

def fail(msg):
    sys.exit(f"bench/run.sh: {msg}")

def run_once(cmd):
    """Runs cmd once (also the warm-up); its stdout, or a clear failure."""
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if p.returncode != 0:
        fail(f"{shlex.join(cmd)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")

def samples(cmd):
    """N wall-clock times of cmd, in ms."""
    if timer == "hyperfine":
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            p = subprocess.run(["hyperfine", "-N", "--style", "none", "--runs", str(n),
                                "--export-json", f.name, shlex.join(cmd)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if p.returncode != 0:  # (its outlier warnings are dropped on success)
                fail(f"hyperfine {shlex.join(cmd)} failed:\n{p.stderr.decode(errors='replace')}")
            result = json.load(open(f.name))["results"][0]
            if any(c != 0 for c in result.get("exit_codes", [])):
                fail(f"{shlex.join(cmd)} failed under hyperfine")
            return [t * 1000 for t in result["times"]]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        out.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            fail(f"{shlex.join(cmd)} exited {p.returncode}")
    return out

def checksum(text):
    return text.rsplit("checksum", 1)[-1].strip() if "checksum" in text else None

def row(name, ms, base=None):
    med = statistics.median(ms)
    ratio = f"{med / base:.2f}x" if base else ""
    return f"{name:<34}{med:>10.1f}{min(ms):>10.1f}{max(ms):>10.1f}{ratio:>10}".rstrip()

def header(title, ratio=""):
    return f"{title:<34}{'median':>10}{'min':>10}{'max':>10}{ratio:>10}".rstrip()

ward_run = [ward, "run", "-q", "--backend", "process"]
native_cmd = ["examples/cpubench.native", rounds]
cpu_cmds = [("native (clang-14 -O2)", native_cmd),
            ("ward run cpubench.wasm", ward_run + ["-c", "examples/cpubench.toml",
                                                  "examples/cpubench.wasm", "--", rounds])]
hello_cmds = [("ward run hello.wasm", ward_run + ["examples/hello.wasm"])]
if have_peer:
    cpu_cmds.append(("peer: wasmtime run cpubench.wasm",
                     [peer, "run", "examples/cpubench.wasm", rounds]))
    hello_cmds.append(("peer: wasmtime run hello.wasm", [peer, "run", "examples/hello.wasm"]))

# Correctness first (this is also the warm-up run of each command).
sums = {name: checksum(run_once(cmd)) for name, cmd in cpu_cmds}
if None in sums.values() or len(set(sums.values())) != 1:
    fail("cpubench checksums differ: " + ", ".join(f"{k}: {v}" for k, v in sums.items()))
for _, cmd in hello_cmds:
    if "Hello" not in run_once(cmd):
        fail(f"{shlex.join(cmd)} did not greet")

cpu = [(name, samples(cmd)) for name, cmd in cpu_cmds]
cold = [(name, samples(cmd)) for name, cmd in hello_cmds]

try:
    version = run_once([ward, "--version"]).strip()
except SystemExit:
    version = "?"
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
print(f"ward run benchmark: {version} ({ward}), backend process")
print(f"host: {cpu_model}, {os.cpu_count()} CPUs, load average "
      f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
print(f"timer: {timer}, {n} runs per command after 1 warm-up run; times in ms, wall clock")
print()
native_med = statistics.median(cpu[0][1])
print(header(f"cpubench ({rounds} rounds, sha256)", "vs native"))
hello_med = statistics.median(cold[0][1])
wasm_med = statistics.median(cpu[1][1])
for i, (name, ms) in enumerate(cpu):
    print(row(name, ms, native_med))
    if i == 1:
        print(f"{'  ward run minus its cold start':<34}{wasm_med - hello_med:>10.1f}"
              f"{'':>20}{(wasm_med - hello_med) / native_med:>9.2f}x")
print(f"checksum (all runs agree): {sums[cpu[0][0]]}")
print()
print(header("cold start (start to exit)"))
for name, ms in cold:
    print(row(name, ms))
print()
if have_peer:
    print(f"peer: {run_once([peer, '--version']).strip()} ({peer}); ward / peer: "
          f"cpubench {wasm_med / statistics.median(cpu[2][1]):.2f}x, "
          f"cold start {hello_med / statistics.median(cold[1][1]):.2f}x")
else:
    print("peer: none available (no wasmtime CLI on PATH; set PEER=/path/to/wasmtime to add one)")
PY
