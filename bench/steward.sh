#!/usr/bin/env bash
# Steward benchmark: CSR -> certificate latency over loopback HTTPS (one TLS
# connection per request, as a Keep makes it), and the same decision in-process
# (no network), for software evidence; plus the Enarx SNP vector if
# ../shared/vectors is there (pinned to 2025-01-01, chain cache warm after the first).
# Prints median / p90 / min / max in a table.
# Usage: bench/steward.sh [N]      (N requests per row, default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p ward-steward --example bench_steward -- "${1:-200}"
