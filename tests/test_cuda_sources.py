"""The CUDA sources compile: every `.cu` file of `xlstm_hf/csrc/cuda` with the machine's nvcc, for each
target architecture and with the flags torch's extension build adds (half-precision conversions off),
with CUDA's headers alone (no torch headers, which a CPU build of torch lacks).
This checks compilation only; tests/test_cuda_kernels.py runs the kernels where a GPU is present.
In CI nvcc must be there (a missing one fails); elsewhere, without it, the tests are skipped."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from torch.utils.cpp_extension import COMMON_NVCC_FLAGS

from xlstm_hf.ops.extension import CSRC, CUDA_SOURCES, cuda_architecture_flags

CUDA_DIR = CSRC / "cuda"
NVCC = shutil.which("nvcc") or next(
    (str(path) for path in Path("/usr/local").glob("cuda*/bin/nvcc") if path.is_file()), None
)


def test_every_cuda_source_is_built():
    on_disk = {path.relative_to(CSRC).as_posix() for path in CUDA_DIR.glob("*.cu")}
    assert on_disk == {source for source in CUDA_SOURCES if source.endswith(".cu")}


@pytest.mark.parametrize("path", sorted(CUDA_DIR.glob("*")), ids=lambda path: path.name)
def test_cuda_sources_include_no_torch_headers(path):
    included = re.findall(r'#include\s+[<"]([^>"]+)[>"]', path.read_text())
    assert not [header for header in included if header.split("/")[0] in ("torch", "ATen", "c10")]


@pytest.mark.parametrize("path", sorted(CUDA_DIR.glob("*.cu")), ids=lambda path: path.name)
def test_cuda_source_compiles(path, tmp_path):
    if NVCC is None:
        assert not os.environ.get("CI"), "CI must compile the CUDA sources, but nvcc is not found"
        pytest.skip("nvcc is not installed here")
    flags = [*COMMON_NVCC_FLAGS, "-std=c++17", "-O3", *cuda_architecture_flags()]  # as torch's build passes them
    command = [NVCC, "-c", *flags, str(path), "-o", str(tmp_path / "out.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize(
    "source, shapes",
    [
        # bf16 and fp16 (written f32.f32) products within a chunk and into the memory; the TF32 read of the memory
        (
            "mlstm_chunkwise.cu",
            {"m16n16k16.f32.bf16.bf16.f32", "m16n16k16.f32.f32", "m16n16k8.f32.tf32.tf32.f32"},
        ),
        ("mlstm_chunkwise_backward.cu", {"m16n16k8.f32.tf32.tf32.f32"}),
    ],
)
def test_chunkwise_kernels_use_the_tensor_cores(source, shapes, tmp_path):
    if NVCC is None:
        assert not os.environ.get("CI"), "CI must compile the CUDA sources, but nvcc is not found"
        pytest.skip("nvcc is not installed here")
    ptx = tmp_path / "out.ptx"
    flags = [*COMMON_NVCC_FLAGS, "-std=c++17", "-O3", "-arch=sm_80"]
    result = subprocess.run(
        [NVCC, "-ptx", *flags, str(CUDA_DIR / source), "-o", str(ptx)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    found = set(re.findall(r"wmma\.mma\.sync\.aligned\.\w+\.\w+\.(m16n16k\d+\.[\w.]+)", ptx.read_text()))
    assert shapes <= found, f"tensor-core products missing from {source}: {sorted(shapes - found)}"
