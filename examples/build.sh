#!/usr/bin/env bash
# Builds every C example to Wasm (examples/<name>.wasm) with Debian's clang-14 and
# wasi-libc, and cpubench natively too (examples/cpubench.native). Outputs newer than
# their source and this script are skipped, so a second run does nothing.
# hello.wat needs no build: `ward run examples/hello.wat` compiles the text. If wabt's
# wat2wasm is installed, hello-wat.wasm is made as well.
#
# Debian packages: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (setup.sh).
set -euo pipefail
cd "$(dirname "$0")"

missing() { echo "examples/build.sh: $1 not found; install it: apt-get install $2" >&2; exit 1; }
command -v clang-14 >/dev/null || missing clang-14 clang-14
# clang runs the linker by its plain name, wasm-ld; Debian's lld-14 puts it here.
[ -x /usr/lib/llvm-14/bin/wasm-ld ] || missing "wasm-ld (/usr/lib/llvm-14/bin/wasm-ld)" lld-14
[ -f /usr/lib/wasm32-wasi/libc.a ] && [ -f /usr/include/wasm32-wasi/stdio.h ] ||
  missing "wasi-libc (/usr/lib/wasm32-wasi/libc.a)" wasi-libc
compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null ||
  missing "compiler-rt for wasm32 (libclang_rt.builtins-wasm32.a)" libclang-rt-14-dev-wasm32

# --sysroot=/usr: Debian's wasi-libc is multiarch-style, headers in
# /usr/include/wasm32-wasi and libraries in /usr/lib/wasm32-wasi, which clang-14's
# WebAssembly driver finds under <sysroot>/{include,lib}/wasm32-wasi.
WASM_FLAGS=(--target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror
            -Wl,--strip-all)
NATIVE_FLAGS=(-O2 -Wall -Wextra -Werror)

fresh() { [ -f "$1" ] && [ "$1" -nt "$2" ] && [ "$1" -nt "$0" ]; }

built=0
for name in hello filetool echo cpubench; do
  if ! fresh "$name.wasm" "$name.c"; then
    echo "examples/build.sh: $name.c -> $name.wasm" >&2
    PATH="/usr/lib/llvm-14/bin:$PATH" clang-14 "${WASM_FLAGS[@]}" -o "$name.wasm.tmp" "$name.c"
    mv "$name.wasm.tmp" "$name.wasm"
    built=$((built + 1))
  fi
done
if ! fresh cpubench.native cpubench.c; then
  echo "examples/build.sh: cpubench.c -> cpubench.native" >&2
  clang-14 "${NATIVE_FLAGS[@]}" -o cpubench.native.tmp cpubench.c
  mv cpubench.native.tmp cpubench.native
  built=$((built + 1))
fi
if command -v wat2wasm >/dev/null && ! fresh hello-wat.wasm hello.wat; then
  echo "examples/build.sh: hello.wat -> hello-wat.wasm" >&2
  wat2wasm -o hello-wat.wasm.tmp hello.wat
  mv hello-wat.wasm.tmp hello-wat.wasm
  built=$((built + 1))
fi
[ "$built" -gt 0 ] || echo "examples/build.sh: examples are up to date" >&2
