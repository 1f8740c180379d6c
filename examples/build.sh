#!/usr/bin/env bash
# Builds every C example to Wasm with Debian's clang-14 + wasi-libc, and cpubench
# natively too. Up-to-date outputs are skipped.
set -euo pipefail
cd "$(dirname "$0")"

CC=clang-14
SYSROOT=/usr
for need in "clang-14:clang-14" "wasm-ld-14:lld-14"; do
  cmd=${need%%:*}; pkg=${need##*:}
  command -v "$cmd" >/dev/null || { echo "build.sh: $cmd not found: apt-get install $pkg" >&2; exit 1; }
done
[ -f /usr/lib/wasm32-wasi/libc.a ] || { echo "build.sh: wasi-libc not found: apt-get install wasi-libc" >&2; exit 1; }
ls /usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 ||
  { echo "build.sh: compiler-rt for wasm32 not found: apt-get install libclang-rt-14-dev-wasm32" >&2; exit 1; }

WASM_FLAGS=(--target=wasm32-wasi --sysroot="$SYSROOT" -O2 -Wall -Wextra -Werror
            -fuse-ld=lld -Wl,--strip-all)

fresh() { [ -f "$1" ] && [ "$1" -nt "$2" ] && [ "$1" -nt "$0" ]; }

for src in hello filetool echo cpubench; do
  if ! fresh "$src.wasm" "$src.c"; then
    echo "build.sh: $src.c -> $src.wasm" >&2
    # clang finds wasm-ld by its plain name; Debian installs it as wasm-ld-14.
    PATH="/usr/lib/llvm-14/bin:$PATH" "$CC" "${WASM_FLAGS[@]}" -o "$src.wasm" "$src.c"
  fi
done
if ! fresh cpubench.native cpubench.c; then
  echo "build.sh: cpubench.c -> cpubench.native" >&2
  "$CC" -O2 -Wall -Wextra -Werror -o cpubench.native cpubench.c
fi
