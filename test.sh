#!/usr/bin/env bash
# The test command: lint, build the examples and every binary, run every test.
set -euo pipefail
cd "$(dirname "$0")"
./examples/build.sh
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The end-to-end tests start the real `ward` and `ward-keep` binaries.
cargo build --locked --workspace --bins
cargo test --locked --workspace
