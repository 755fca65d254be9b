"""Builds of the emulated CUDA kernels, cached under torch's extension root (`TORCH_EXTENSIONS_DIR` moves it):

* `emulated_kernels()`: the CUDA bindings (csrc/cuda_ops.cpp) and kernels as torch operators on the CPU;
* `sanitized_driver(sanitizer)`: driver.cpp and the kernels as an executable under AddressSanitizer or
  ThreadSanitizer (which cannot be loaded into Python), optionally with some `.cu` sources replaced.

One build of each kind at a time across processes (pytest-xdist workers share the cache)."""

import contextlib
import fcntl
import functools
import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.cpp_extension import get_default_build_root, load

from .rewrite import rewrite

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
CSRC = HERE.parents[1] / "src" / "xlstm_hf" / "csrc"
CUDA = CSRC / "cuda"
ROOT = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / "xlstm_hf_cuda_emulation"
SANITIZERS = ("address", "thread")


@contextlib.contextmanager
def exclusive(kind: str):
    """One build of `kind` at a time, across processes."""
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / f"{kind}.lock", "w") as lock:  # beside the build folder, where torch keeps a lock of its own
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cuda_sources(replaced: dict[str, str] | None = None) -> dict[str, str]:
    """{file name: text} of the `.cu` files, with `replaced` ones swapped in."""
    return {path.name: path.read_text() for path in sorted(CUDA.glob("*.cu"))} | (replaced or {})


def write_if_changed(path: Path, text: str) -> Path:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def generated(sources: dict[str, str], folder: Path) -> list[Path]:
    """The sources rewritten into C++ (rewrite.py) in `folder`."""
    return [write_if_changed(folder / f"{Path(name).stem}.cpp", rewrite(text, str(CUDA / name)))
            for name, text in sources.items()]


@functools.cache
def emulated_kernels():
    """The operators torch.ops.xlstm_hf_emulated: the functions of cuda_ops.cpp on CPU tensors, and the
    emulator's controls (bindings.cpp)."""
    with exclusive("extension"):
        sources = generated(cuda_sources(), ROOT / "extension" / "generated")
        load(
            name="xlstm_hf_cuda_emulation",
            sources=[str(s) for s in [*sources, HERE / "runtime.cpp", HERE / "bindings.cpp"]],
            extra_include_paths=[str(INCLUDE), str(CSRC), str(CUDA)],
            extra_cflags=["-O2", "-pthread"],
            extra_ldflags=["-pthread"],
            build_directory=str(ROOT / "extension"),
            is_python_module=False,
        )
    return torch.ops.xlstm_hf_emulated


def launches() -> list[dict]:
    """The emulated launches since the last reset: name, error (a cudaError_t), threads per block, shared
    memory in bytes."""
    _, *fields = emulated_kernels().stats()
    return [dict(zip(("name", "error", "threads", "shared"), values)) for values in zip(*fields)]


def attribute_sets() -> int:
    """How often cudaFuncSetAttribute was called since the last reset."""
    return emulated_kernels().stats()[0]


def headers_digest() -> str:
    headers = sorted([*INCLUDE.rglob("*.h"), *CUDA.glob("*.h"), *CUDA.glob("*.cuh"), *CSRC.glob("*.h")])
    return hashlib.sha256(b"".join(path.read_bytes() for path in headers)).hexdigest()


def sanitized_driver(sanitizer: str, replaced: dict[str, str] | None = None) -> Path:
    """driver.cpp, the runtime and the kernels (`replaced` sources swapped in) built with -fsanitize=`sanitizer`."""
    flags = ["-std=c++20", "-O1", "-g1", "-fno-omit-frame-pointer", f"-fsanitize={sanitizer}", "-pthread",
             f"-I{INCLUDE}", f"-I{CUDA}"]
    digest = headers_digest() + " ".join(flags)
    with exclusive(sanitizer):
        sources = [*generated(cuda_sources(replaced), ROOT / sanitizer / "generated"), HERE / "runtime.cpp",
                   HERE / "driver.cpp"]

        def compiled(source: Path) -> Path:
            key = hashlib.sha256((digest + source.read_text()).encode()).hexdigest()[:16]
            target = ROOT / sanitizer / f"{source.stem}-{key}.o"
            if not target.exists():
                subprocess.run(["g++", *flags, "-c", str(source), "-o", f"{target}.tmp"], check=True)
                Path(f"{target}.tmp").rename(target)
            return target

        with ThreadPoolExecutor(2) as pool:
            objects = list(pool.map(compiled, sources))
        key = hashlib.sha256("".join(o.name for o in objects).encode()).hexdigest()[:16]
        driver = ROOT / sanitizer / f"driver-{key}"
        if not driver.exists():
            subprocess.run(["g++", f"-fsanitize={sanitizer}", "-pthread", *map(str, objects), "-o", str(driver)],
                           check=True)
        return driver
