"""Compile and load the whole extension, CPU and CUDA sources, against a CUDA build of torch on a machine
without a GPU: checks the bindings (csrc/cuda_ops.cpp), which the tests' nvcc check of the .cu files
does not reach. Run it in a venv that holds a CUDA build of torch (no transformers needed):

    python3 -m venv /tmp/cuda-venv && /tmp/cuda-venv/bin/pip install torch==2.14.1 ninja
    CUDA_HOME=/usr/local/cuda /tmp/cuda-venv/bin/python scripts/check_cuda_build.py
"""

import importlib.util
import os
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

EXTENSION_PY = Path(__file__).resolve().parents[1] / "src" / "xlstm_hf" / "ops" / "extension.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("extension", EXTENSION_PY)  # without importing xlstm_hf
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    simd_flags = extension.simd_compile_flags()
    load(
        name="xlstm_hf_cuda_build_check",
        sources=[str(extension.CSRC / source) for source in extension.CPU_SOURCES + extension.CUDA_SOURCES],
        extra_include_paths=[str(extension.CSRC)],
        extra_cflags=["-O3", "-fopenmp", *simd_flags[1:]],
        extra_cuda_cflags=["-O3", "-std=c++17", *extension.cuda_architecture_flags()],
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
    )
    ops = ("slstm_forward", "slstm_backward", "mlstm_step", "mlstm_chunkwise_forward", "mlstm_chunkwise_backward")
    missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"xlstm_hf::{op}", "CUDA")]
    assert not missing, f"no CUDA kernel registered for {missing}"
    print(f"the extension builds and loads with torch {torch.__version__}; CUDA kernels of {', '.join(ops)}")


if __name__ == "__main__":
    main()
