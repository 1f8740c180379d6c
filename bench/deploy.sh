#!/usr/bin/env bash
# Benchmark for `ward deploy` on loopback. Starts `ward host serve` on 127.0.0.1 (a
# fresh state directory, a free port), then runs, N times each and interleaved:
#   ward deploy --insecure --json examples/hello.wasm   (against that daemon)
#   ward run examples/hello.wasm                        (locally: the peer baseline)
# and prints the median and p90 of each deploy phase, as the client reports it in its
# --json timings line (create / attest / upload / run / total), of the deploy's wall
# clock (process start to exit), and of the local `ward run`, with the ratio.
#
# Usage: bench/deploy.sh [N]
#   N      deploys (and local runs) to time (default 20; also from $N)
#   WARD   the ward binary (default target/x86_64-unknown-linux-gnu/release/ward;
#          ward-keep must sit next to it)
# Timings are wall clock, on whatever else this machine is doing: the table prints the
# load average, and min..max shows the spread.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-${N:-20}}
WARD=${WARD:-target/x86_64-unknown-linux-gnu/release/ward}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "bench/deploy.sh: N must be a positive count, not '$N'" >&2; exit 2; }
[ -x "$WARD" ] && [ -x "$(dirname "$WARD")/ward-keep" ] || {
  echo "bench/deploy.sh: $WARD (and ward-keep next to it) is not built; run: cargo build --release -p ward-cli -p ward-keep (or set WARD=)" >&2
  exit 1
}
[ -f examples/hello.wasm ] || examples/build.sh

exec python3 - "$N" "$WARD" <<'PY'
import json, math, os, shlex, signal, statistics, subprocess, sys, tempfile, time

n, ward = int(sys.argv[1]), sys.argv[2]
app = "examples/hello.wasm"

def fail(msg):
    sys.exit(f"bench/deploy.sh: {msg}")

state = tempfile.TemporaryDirectory(prefix="ward-bench-")
daemon = subprocess.Popen(
    [ward, "host", "serve", "--listen", "127.0.0.1:0", "--state-dir", state.name],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
log = []
addr = None
for line in daemon.stderr:
    log.append(line)
    if "listening on https://" in line:
        addr = line.split("listening on https://", 1)[1].split()[0]
        break
if addr is None:
    fail("ward host serve did not start:\n" + "".join(log))

def stop_daemon():
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()

# Drain the daemon's log so it never blocks on a full pipe.
import threading
threading.Thread(target=lambda: [log.append(l) for l in daemon.stderr], daemon=True).start()

deploy_cmd = [ward, "deploy", "--insecure", "-q", "--json", app, "--host", f"https://{addr}"]
run_cmd = [ward, "run", "-q", app]

def timed(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    ms = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        stop_daemon()
        fail(f"{shlex.join(cmd)} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
    return ms, p.stdout.decode(errors="replace")

def timings(out):
    last = json.loads(out.strip().splitlines()[-1])
    return last["timings_ms"]

phases = ["create", "attest", "upload", "run", "total"]
samples = {k: [] for k in phases}
deploy_wall, run_wall = [], []
try:
    # Warm-up (and correctness) runs, not counted.
    for cmd in (deploy_cmd, run_cmd):
        _, out = timed(cmd)
        if "Hello" not in out:
            fail(f"{shlex.join(cmd)} did not greet:\n{out}")
    for _ in range(n):
        ms, out = timed(deploy_cmd)
        deploy_wall.append(ms)
        for k, v in timings(out).items():
            samples[k].append(v)
        ms, _ = timed(run_cmd)
        run_wall.append(ms)
finally:
    stop_daemon()

def p90(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]

def row(name, xs):
    return (f"{name:<36}{statistics.median(xs):>9.2f}{p90(xs):>9.2f}"
            f"{min(xs):>9.2f}{max(xs):>9.2f}")

try:
    version = subprocess.run([ward, "--version"], capture_output=True, text=True).stdout.strip()
except OSError:
    version = "?"
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "?")
print(f"ward deploy benchmark: {version} ({ward}), process Keeps on 127.0.0.1")
print(f"host: {cpu_model}, {os.cpu_count()} CPUs, load average "
      f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
print(f"{n} deploys of {app} (--insecure), interleaved with {n} local runs, after 1 "
      "warm-up each; times in ms, wall clock")
print()
print(f"{'phase (client --json timings)':<36}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
for k in phases[:-1]:
    print(row(f"  {k}", samples[k]))
print(row("  total (create..exit)", samples["total"]))
print(row("ward deploy, process start to exit", deploy_wall))
print(row("peer: ward run hello.wasm (local)", run_wall))
print()
dm, rm = statistics.median(deploy_wall), statistics.median(run_wall)
print(f"deploy / local run (medians, start to exit): {dm / rm:.2f}x "
      f"(+{dm - rm:.1f} ms for the host API, attestation and TLS)")
PY
