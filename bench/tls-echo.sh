#!/usr/bin/env bash
# TLS echo throughput, in one run: examples/echo.wasm in a `process` Keep with
# prot = "tls" (`ward run`; TLS terminated in the Keep, certificate from an
# in-process Steward) vs a native echo server (Rust + rustls, the same 4 KiB
# read/write loop as echo.c, a certificate from the same Steward). One rustls
# client that trusts only the Steward's CA measures both, interleaved; the table
# gives median/min/max MB/s and the handshake time, then the Keep/native ratio.
#
# Usage: bench/tls-echo.sh [MIB] [ROUNDS]     (default 32 MiB per connection, 5 rounds)
#   WARD   the ward binary (default target/x86_64-unknown-linux-gnu/release/ward;
#          ward-keep must sit next to it)
set -euo pipefail
cd "$(dirname "$0")/.."
WARD=${WARD:-target/x86_64-unknown-linux-gnu/release/ward}
[ -x "$WARD" ] && [ -x "$(dirname "$WARD")/ward-keep" ] || {
  echo "bench/tls-echo.sh: $WARD (and ward-keep next to it) is not built; run: cargo build --release -p ward-cli -p ward-keep (or set WARD=)" >&2
  exit 1
}
[ -f examples/echo.wasm ] || examples/build.sh
cargo run --quiet --release -p ward-steward --example bench_tls_echo -- "$WARD" examples/echo.wasm "${1:-32}" "${2:-5}"
