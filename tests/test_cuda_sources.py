"""The CUDA sources compile: every `.cu` file of `xlstm_hf/csrc/cuda` with the machine's nvcc, for each
target architecture and with the flags torch's extension build adds (half-precision conversions off),
with CUDA's headers alone (no torch headers, which a CPU build of torch lacks); and every kernel fits the
blocks it is launched with: its registers (from ptxas) for the threads of its __launch_bounds__, which
bound the launcher's choices (a launch beyond them fails, on the GPU and in tests/test_cuda_emulation.py);
and the sLSTM kernels read the step kinds of the CPU kernel.
This checks compilation only; tests/test_cuda_kernels.py runs the kernels where a GPU is present.
In CI nvcc must be there (a missing one fails); elsewhere, without it, the tests are skipped."""

import math
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


MAX_THREADS = 1024  # per block, and what a kernel without __launch_bounds__ may be launched with
REGISTERS_PER_BLOCK = 65536  # on sm_80 and sm_90, allocated 8 per thread at a time
STATIC_SHARED_LIMIT = 48 * 1024


def kernel_resources(ptxas_log: str, ptx_files) -> list[tuple[str, str, int, int, int]]:
    """(kernel, architecture, registers per thread, static shared bytes, most threads per block) of each
    kernel ptxas compiled; the most threads are the kernel's __launch_bounds__ (.maxntid in the PTX)."""
    bounds = {}
    for ptx in ptx_files:
        for name, directives in re.findall(r"\.entry\s+(\w+)\([^)]*\)\s*([^{]*)\{", ptx.read_text()):
            declared = re.search(r"\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", directives)
            bounds[name] = math.prod(map(int, declared.groups())) if declared else MAX_THREADS
    entries = re.findall(r"Compiling entry function '(\w+)' for '(sm_\d+)'\n(?:.*\n)*?.*Used (\d+) registers(.*)",
                         ptxas_log)
    return [(name, arch, int(registers), int((re.findall(r"(\d+) bytes smem", rest) or [0])[0]), bounds[name])
            for name, arch, registers, rest in entries]


def readable(mangled: str) -> str:
    """slstm_backward_kernel<d> for the mangled name of slstm_backward_kernel<double>."""
    return re.sub(r".*?([a-z_]+_kernel)I(.+?)E.*", r"\1<\2>", mangled)


@pytest.mark.parametrize("path", sorted(CUDA_DIR.glob("*.cu")), ids=lambda path: path.name)
def test_cuda_source_compiles_and_its_kernels_fit_their_blocks(path, tmp_path):
    if NVCC is None:
        assert not os.environ.get("CI"), "CI must compile the CUDA sources, but nvcc is not found"
        pytest.skip("nvcc is not installed here")
    flags = [*COMMON_NVCC_FLAGS, "-std=c++17", "-O3", *cuda_architecture_flags()]  # as torch's build passes them
    command = [NVCC, "-c", *flags, "-Xptxas", "-v", "--keep", "--keep-dir", str(tmp_path), str(path), "-o",
               str(tmp_path / "out.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    resources = kernel_resources(result.stderr, tmp_path.glob("*.ptx"))
    assert {arch for _, arch, *_ in resources} == {"sm_80", "sm_90"}
    too_large = [
        f"{readable(name)} on {arch}: {registers} registers x {threads} threads, {shared} bytes of static shared memory"
        for name, arch, registers, shared, threads in resources
        if threads > MAX_THREADS or -(-registers // 8) * 8 * -(-threads // 32) * 32 > REGISTERS_PER_BLOCK
        or shared > STATIC_SHARED_LIMIT
    ]
    assert not too_large, "kernels that do not fit the blocks they may be launched with:\n" + "\n".join(too_large)


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


def test_slstm_step_kinds_are_the_cpu_kernels():
    """The CUDA sLSTM reads its uint8 mask with the values of the CPU kernel's (compiled.slstm builds one for both:
    0 padded, 1 real, 2 a step that starts a packed sequence)."""
    kinds = re.compile(r"enum \w+ : uint8_t \{ *([^}]*?) *\};")
    cuda, cpu = (kinds.findall(path.read_text()) for path in (CUDA_DIR / "launch.h", CSRC / "slstm_cpu.cpp"))
    assert cuda == cpu == ["kPadded = 0, kReal = 1, kStart = 2"]
