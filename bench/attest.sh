#!/usr/bin/env bash
# Attestation verification benchmark: median time per evidence kind, with the
# certificate-chain cache cold and warm, from one run. Needs ../shared/vectors.
# Usage: bench/attest.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p ward-attest --example bench_verify -- "${1:-31}"
