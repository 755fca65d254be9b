"""The compiled kernels (`xlstm_hf/csrc`): one extension, built once per machine into torch's extension
cache, ahead of time with `xlstm-hf build` or on first use, and loaded lazily. It holds the CPU kernels
and, where torch has CUDA and `nvcc` is found, the CUDA kernels (`csrc/cuda`, built for sm_80 and
sm_90). Importing xlstm_hf compiles nothing; where no build works, the PyTorch kernels run and one log
line says why.

`XLSTM_HF_EXTENSION=0` turns the compiled kernels off; `TORCH_EXTENSIONS_DIR` moves the cache.
"""

import logging
import os
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CPU_SOURCES = ("ops.cpp", "slstm_cpu.cpp", "mlstm_cpu.cpp", "mlstm_chunkwise_cpu.cpp", "conv_cpu.cpp", "decode_cpu.cpp")
CUDA_SOURCES = ("cuda_ops.cpp", "cuda/slstm.cu", "cuda/mlstm_step.cu", "cuda/mlstm_chunkwise.cu",
                "cuda/mlstm_chunkwise_backward.cu")
CUDA_ARCHITECTURES = ("80", "90")  # Ampere and Hopper, as machine code; no Hopper-only instructions yet
EXTENSION_NAME = "xlstm_hf"

_lock = threading.Lock()
_status: dict[str, str | bool] = {}  # {"available": bool, "reason": str, "cuda": bool}, once tried


def build_extension(verbose: bool = False) -> bool:
    """Compile (or find in the cache) and load the extension, then register the Python parts of its
    operators. -> whether it holds the CUDA kernels. Raises when the build fails."""
    from torch.utils.cpp_extension import load

    with_cuda = cuda_can_be_built()
    simd_flags = simd_compile_flags()
    load(
        name=f"{EXTENSION_NAME}_{simd_flags[0] if simd_flags else 'scalar'}{'_cuda' if with_cuda else '_cpu'}",
        sources=[str(CSRC / source) for source in CPU_SOURCES + (CUDA_SOURCES if with_cuda else ())],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O3", "-fopenmp", *simd_flags[1:]],
        extra_cuda_cflags=["-O3", "-std=c++17", *cuda_architecture_flags()],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=verbose,
    )
    from . import compiled

    compiled.register_python_parts()
    return with_cuda


def cuda_can_be_built() -> bool:
    """Whether this torch has CUDA, a GPU is visible and nvcc is found."""
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and CUDA_HOME is not None


def cuda_architecture_flags() -> list[str]:
    return [f"-gencode=arch=compute_{arch},code=sm_{arch}" for arch in CUDA_ARCHITECTURES]


def simd_compile_flags() -> list[str]:
    """[name, compiler flags...] for the SIMD width of ATen's vectors on this CPU (AVX2 where torch finds
    AVX2 or AVX-512), or [] for plain scalar code."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return ["avx2", "-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return []


@torch.compiler.assume_constant_result  # traced models take its answer as a constant: it does not change
def extension_status() -> tuple[bool, str]:
    """(available, why): builds and loads the extension on the first call, in one thread at a time."""
    with _lock:
        if not _status:
            _status.update(_try_build())
        return bool(_status["available"]), str(_status["reason"])


def extension_has_cuda() -> bool:
    """Whether the loaded extension holds the CUDA kernels (building it first if needed)."""
    available, _ = extension_status()
    return available and bool(_status["cuda"])


def _try_build() -> dict[str, str | bool]:
    if os.environ.get("XLSTM_HF_EXTENSION", "1") == "0":
        return {"available": False, "reason": "turned off by XLSTM_HF_EXTENSION=0", "cuda": False}
    logger.info("xlstm_hf: loading the compiled kernels (built once per machine, about a minute)")
    try:
        with_cuda = build_extension()
    except Exception as error:  # a missing compiler, headers or ninja: fall back, say so once
        reason = f"it could not be built ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        logger.warning("xlstm_hf: the compiled kernels are unavailable, %s; the PyTorch kernels run instead.", reason)
        return {"available": False, "reason": reason, "cuda": False}
    return {"available": True, "reason": "built and loaded", "cuda": with_cuda}
