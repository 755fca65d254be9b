"""The CUDA-only syntax of a `.cu` file rewritten into C++ for the emulator (include/emu.h), line for line, so
that compiler messages and sanitizer reports name the lines of the original:

    k<<<grid, block, shared, stream>>>(args)  ->  emu::launch("k", k, grid, block, shared, stream, args)
    cudaLaunchCooperativeKernel(reinterpret_cast<void*>(k), ...)  ->  emu::launch_cooperative(k, ...)
    extern __shared__ T name[];  ->  auto* name = emu::dynamic_shared<T>();
    __shared__ __align__(n) T a[N], b;  ->  auto& a = emu::shared<T[N]>(n); auto& b = emu::shared<T>(n);
    __global__ void __launch_bounds__(n) k(...) {  ->  __global__ void k(...) { if (!emu::within_launch_bounds(n)) ...

Everything else compiles as it is. Such syntax left over in the code (not in comments) is an error.
"""

import re
import sys
from pathlib import Path

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(\s*(\)?)", re.DOTALL)
COOPERATIVE = re.compile(r"cudaLaunchCooperativeKernel\(\s*reinterpret_cast<(?:const\s+)?void\s*\*>\((\w+)\)")
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\w+\)\s+)?([\w\s]+?)\s+(\w+)\[\];")
SHARED = re.compile(r"__shared__\s+(?:__align__\((\w+)\)\s+)?([^;]+);")
DECLARATOR = re.compile(r"^(?:(.*\S)\s+)?(\w+)\s*((?:\[[^\]]*\])*)$")
LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\(([^()]*)\)\s*")
LEFT_OVER = ("<<<", "__shared__", "__launch_bounds__", "cudaLaunchCooperativeKernel")


def split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char in "([<{"
        depth -= char in ")]>}"
        if char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    return parts + [text[start:].strip()]


def launch(match: re.Match) -> str:
    kernel, config, empty_args = match.groups()
    grid, block, shared, stream = (split_top_level(config) + ["0", "nullptr"])[:4]
    name = kernel.split("<")[0]
    head = f'emu::launch("{name}", {kernel}, {grid}, {block}, {shared}, {stream}'
    return head + ")" if empty_args else head + ", "


def shared(match: re.Match) -> str:
    alignment, declaration = match.groups()
    declarators = split_top_level(declaration)
    element_type = DECLARATOR.match(declarators[0]).group(1)
    lines = []
    for declarator in declarators:
        _, name, dims = DECLARATOR.match(declarator).groups()
        lines.append(f"auto& {name} = emu::shared<{element_type}{dims}>({alignment or ''});")
    return " ".join(lines)


def launch_bounds(source: str) -> str:
    """Each `__launch_bounds__(n)` out of its kernel's declaration, and a check of it at the top of the body."""
    while match := LAUNCH_BOUNDS.search(source):
        body = source.index("{", match.end())
        check = f" if (!emu::within_launch_bounds({match.group(1)})) return;"
        source = source[: match.start()] + source[match.end() : body + 1] + check + source[body + 1 :]
    return source


def rewrite(source: str, path: str) -> str:
    """The C++ the emulator compiles for the CUDA source `source` read from `path`."""
    source = LAUNCH.sub(launch, source)
    source = COOPERATIVE.sub(r"emu::launch_cooperative(\1", source)
    source = EXTERN_SHARED.sub(r"auto* \2 = emu::dynamic_shared<\1>();", source)
    source = SHARED.sub(shared, source)
    source = launch_bounds(source)
    code = re.sub(r"//[^\n]*", "", source)
    left = [syntax for syntax in LEFT_OVER if syntax in code]
    if left:
        raise ValueError(f"{path}: CUDA syntax the emulator does not rewrite: {left}")
    return f'#include "emu.h"\n#line 1 "{path}"\n{source}'


if __name__ == "__main__":  # python rewrite.py kernel.cu > kernel.cpp
    print(rewrite(Path(sys.argv[1]).read_text(), sys.argv[1]), end="")
