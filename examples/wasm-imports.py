#!/usr/bin/env python3
"""Prints the imports and exports of core Wasm modules, checking the section framing.

    examples/wasm-imports.py examples/*.wasm

(llvm-objdump-14 cannot read linked, stripped Wasm executables; wabt is not installed.)
"""
import sys


def leb(b, i):
    result = shift = 0
    while True:
        byte = b[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def name(b, i):
    n, i = leb(b, i)
    return b[i:i + n].decode(), i + n


def limits(b, i):
    flags, i = leb(b, i)
    _, i = leb(b, i)
    return leb(b, i)[1] if flags & 1 else i


def describe(path):
    b = open(path, "rb").read()
    if b[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("not a core Wasm module (magic/version 1)")
    i, imports, exports = 8, [], []
    while i < len(b):
        section = b[i]
        size, i = leb(b, i + 1)
        end = i + size
        if end > len(b):
            raise ValueError(f"section {section} runs past the end of the file")
        if section == 2:
            count, j = leb(b, i)
            for _ in range(count):
                module, j = name(b, j)
                field, j = name(b, j)
                kind = b[j]
                j += 1
                if kind == 0:    # function: type index
                    _, j = leb(b, j)
                elif kind == 1:  # table: reftype, limits
                    j = limits(b, j + 1)
                elif kind == 2:  # memory: limits
                    j = limits(b, j)
                elif kind == 3:  # global: valtype, mutability
                    j += 2
                elif kind == 4:  # tag: attribute, type index
                    _, j = leb(b, j + 1)
                kinds = ["", " (table)", " (memory)", " (global)", " (tag)"]
                imports.append(f"{module}.{field}{kinds[kind] if kind < 5 else ' (?)'}")
        elif section == 7:
            count, j = leb(b, i)
            for _ in range(count):
                field, j = name(b, j)
                _, j = leb(b, j + 1)
                exports.append(field)
        i = end
    return imports, exports


status = 0
for path in sys.argv[1:]:
    try:
        imports, exports = describe(path)
    except (ValueError, IndexError, UnicodeDecodeError, OSError) as e:
        print(f"{path}: invalid: {e}", file=sys.stderr)
        status = 1
        continue
    print(f"{path}:")
    print(f"  imports: {' '.join(imports) or '(none)'}")
    print(f"  exports: {' '.join(exports) or '(none)'}")
sys.exit(status)
