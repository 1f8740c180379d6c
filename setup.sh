#!/usr/bin/env bash
# Sets up a fresh Debian machine for Ward: the C-to-Wasm toolchain (Debian packages),
# a release build of `ward` and `ward-keep`, and the example workloads.
# Afterwards `ward` is on PATH (in ~/.cargo/bin, next to cargo).
set -euo pipefail
cd "$(dirname "$0")"

need_pkgs=()
for pkg in clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]} (Debian packages)" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

echo "setup: building ward and ward-keep (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p ward-cli -p ward-keep

bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin_dir"
target=target/x86_64-unknown-linux-gnu/release
install -m 0755 "$target/ward" "$target/ward-keep" "$bin_dir/"
echo "setup: installed ward and ward-keep into $bin_dir" >&2

echo "setup: building the examples" >&2
./examples/build.sh
echo "setup: done. Try: ward run examples/hello.wasm" >&2
