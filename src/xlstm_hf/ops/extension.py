"""The compiled CPU kernels (`xlstm_hf/csrc`): built once per machine into torch's extension cache,
ahead of time with `xlstm-hf build` or on first use, and loaded lazily. Importing xlstm_hf compiles
nothing; where no build works, the PyTorch kernels run and one log line says why.

`XLSTM_HF_EXTENSION=0` turns the compiled kernels off; `TORCH_EXTENSIONS_DIR` moves the cache.
"""

import logging
import os
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CPU_SOURCES = ("ops.cpp", "slstm_cpu.cpp", "mlstm_cpu.cpp", "conv_cpu.cpp", "decode_cpu.cpp")
EXTENSION_NAME = "xlstm_hf_cpu"

_lock = threading.Lock()
_status: dict[str, str | bool] = {}  # {"available": bool, "reason": str}, once tried


def build_cpu_extension(verbose: bool = False) -> None:
    """Compile (or find in the cache) and load the CPU extension, then register the Python parts of
    its operators. Raises when the build fails."""
    from torch.utils.cpp_extension import load

    simd_flags = simd_compile_flags()
    load(
        name=f"{EXTENSION_NAME}_{simd_flags[0] if simd_flags else 'scalar'}",
        sources=[str(CSRC / source) for source in CPU_SOURCES],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O3", "-fopenmp", *simd_flags[1:]],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=verbose,
    )
    from . import compiled

    compiled.register_python_parts()


def simd_compile_flags() -> list[str]:
    """[name, compiler flags...] for the SIMD width of ATen's vectors on this CPU (AVX2 where torch finds
    AVX2 or AVX-512), or [] for plain scalar code."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return ["avx2", "-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return []


def cpu_extension_status() -> tuple[bool, str]:
    """(available, why): builds and loads the extension on the first call, in one thread at a time."""
    with _lock:
        if not _status:
            _status["available"], _status["reason"] = _try_build()
        return bool(_status["available"]), str(_status["reason"])


def _try_build() -> tuple[bool, str]:
    if os.environ.get("XLSTM_HF_EXTENSION", "1") == "0":
        return False, "turned off by XLSTM_HF_EXTENSION=0"
    logger.info("xlstm_hf: loading the CPU extension (compiled once per machine, about a minute)")
    try:
        build_cpu_extension()
    except Exception as error:  # a missing compiler, headers or ninja: fall back, say so once
        reason = f"it could not be built ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        logger.warning("xlstm_hf: the CPU extension is unavailable, %s; the PyTorch kernels run instead.", reason)
        return False, reason
    return True, "built and loaded"
