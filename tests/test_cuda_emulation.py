"""The CUDA kernels (src/xlstm_hf/csrc/cuda) and their bindings (csrc/cuda_ops.cpp) on the CPU, under the
emulator of tests/cuda_emulation: the unmodified sources compiled as C++, one OS thread per CUDA thread,
exact barriers (a __syncthreads in divergent code fails the launch), wmma tiles checked for alignment and
rounded as the tensor cores round, shared memory and every output NaN until written, the launch limits of
the GPU (threads, __launch_bounds__, 48 KB of shared memory without the attribute). Forward and backward of
every kernel against the float64 references, packed rows included, with the cases and tolerances of
tests/test_cuda_kernels.py (scaled down: hundreds of OS threads per block); builds under AddressSanitizer and
ThreadSanitizer run a driver over the kernels. What it cannot see: registers, occupancy, timing, code
generation and the hardware's memory model (test_cuda_sources.py reads registers from ptxas; the GPU runs the rest)."""

import os
import re
import shutil
import subprocess

import pytest
import torch
from cuda_emulation import build
from cuda_emulation import ops as emulated
from kernel_inputs import mlstm_step_inputs, outputs_and_gradients, padding_mask, slstm_inputs, slstm_state
from test_cuda_kernels import (
    CHUNKWISE_PACKED_CASES,
    SLSTM_PACKED_CASES,
    assert_chunkwise_matches_reference,
    assert_chunkwise_packed,
    assert_matches_reference,
    assert_slstm_packed,
    assert_spans_summed,
    assert_step_packed,
)

from xlstm_hf import ops
from xlstm_hf.ops.mlstm import mlstm_step
from xlstm_hf.ops.slstm import slstm_recurrent

if shutil.which("g++") is None:
    assert not os.environ.get("CI"), "CI must run the emulated CUDA kernels, but g++ is not found"
    pytest.skip("g++ is not installed here", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def emulator():
    """The emulated kernels (built once per machine, about 25 s, and cached), their launch records reset,
    with torch.empty filling with NaN (deterministic mode): an element a kernel does not write shows."""
    kernels = build.emulated_kernels()
    kernels.reset_stats()
    torch.use_deterministic_algorithms(True)
    yield kernels
    torch.use_deterministic_algorithms(False)


def launches():
    return [(launch["name"], launch["error"]) for launch in build.launches()]


# ---- under the sanitizers -------------------------------------------------------------------------------

DRIVER_CASES = ["slstm-cooperative", "slstm-per-pair", "slstm-packed-cooperative", "slstm-packed-per-pair",
                "chunkwise-float", "chunkwise-bf16", "step"]


def require_sanitizer(sanitizer, folder):
    probe = folder / f"probe-{sanitizer}"
    compiled = subprocess.run(["g++", f"-fsanitize={sanitizer}", "-x", "c++", "-", "-o", str(probe)],
                              input="int main() {}", capture_output=True, text=True)
    if compiled.returncode != 0 or subprocess.run([str(probe)], capture_output=True).returncode != 0:
        pytest.skip(f"g++ -fsanitize={sanitizer} does not build or run here: {compiled.stderr.strip()[:200]}")


@pytest.mark.parametrize("sanitizer", build.SANITIZERS)
def test_kernels_under_sanitizer(sanitizer, tmp_path):
    """Out-of-bounds reads and writes of global and shared memory (address), data races between the threads
    of a block or of a cooperative grid (thread): every kernel, forward and backward."""
    require_sanitizer(sanitizer, tmp_path)
    result = subprocess.run([str(build.sanitized_driver(sanitizer)), *DRIVER_CASES], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.split() == [word for case in DRIVER_CASES for word in ("ran", case)]


def test_address_sanitizer_catches_shared_memory_one_element_short(tmp_path):
    """The checker checked: mlstm_step.cu asking for one value less of shared memory than its reduction
    writes (a warp's partial sum lands past the end)."""
    require_sanitizer("address", tmp_path)
    source = (build.CUDA / "mlstm_step.cu").read_text()
    asked = "const size_t shared = (2 * args.Dqk + kThreads / 32) * sizeof(Real);"
    assert asked in source
    broken = source.replace(asked, asked.replace("kThreads / 32", "kThreads / 32 - 1"))
    driver = build.sanitized_driver("address", {"mlstm_step.cu": broken})
    result = subprocess.run([str(driver), "step"], capture_output=True, text=True, timeout=300)
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in result.stderr and "reduce.cuh" in result.stderr


def test_thread_sanitizer_and_barrier_check_catch_a_broken_kernel(tmp_path):
    """The checkers checked on a copy of slstm.cu with two barriers broken: the per-pair backward without the
    one between writing the gate gradients and reading them (a race ThreadSanitizer reports), the forward
    with the one at the end of a step in divergent code (the emulator fails the launch)."""
    require_sanitizer("thread", tmp_path)
    source = (build.CUDA / "slstm.cu").read_text()
    removed = "    __syncthreads();  // draw complete, dh_carry read\n"
    divergent = "    __syncthreads();  // the new h complete before the next step reads it\n"
    assert removed in source and divergent in source
    broken = source.replace(removed, "").replace(divergent, "    if (threadIdx.x > 0) __syncthreads();\n")
    driver = build.sanitized_driver("thread", {"slstm.cu": broken})
    result = subprocess.run([str(driver), "slstm-per-pair"], capture_output=True, text=True, timeout=300)
    assert "WARNING: ThreadSanitizer: data race" in result.stderr and "slstm_backward_kernel" in result.stderr
    assert re.search(r"slstm_forward: .*emulator: block \(0, 0, 0\): thread 0 passed \d+ __syncthreads, thread 1 \d+",
                     result.stdout), result.stdout


# the packed-row check of the driver (a row against its sequences alone) on slstm.cu with one reset broken
BROKEN_RESETS = {
    "slstm-packed-cooperative": (  # the cooperative forward's recurrent product reads the old h at a start
        "h_all[index] = starts(a.kinds, b, T, t + 1) ? Real(0) : exchange[", "h_all[index] = exchange["),
    "slstm-packed-per-pair": (  # the per-pair backward carries the gradient of h back across a start
        "    if (kind == kStart) {\n      for (int64_t e = threadIdx.x; e < D; e += blockDim.x) dh_carry[e] = Real(0);",
        "    if (false) {\n      for (int64_t e = threadIdx.x; e < D; e += blockDim.x) dh_carry[e] = Real(0);"),
}


@pytest.mark.parametrize("case", BROKEN_RESETS)
def test_a_broken_reset_fails_the_packed_row_check(case, tmp_path):
    require_sanitizer("address", tmp_path)
    source = (build.CUDA / "slstm.cu").read_text()
    original, broken = BROKEN_RESETS[case]
    assert source.count(original) == 1
    driver = build.sanitized_driver("address", {"slstm.cu": source.replace(original, broken)})
    result = subprocess.run([str(driver), case], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout.endswith(f"FAILED {case}\n"), result.stdout + result.stderr[-2000:]


# ---- against the references ------------------------------------------------------------------------------

# (B, H, T, D), padding, initial state: a partial warp of cells, both padding kinds, and D = 72, where a
# cooperative launch splits each head's cells over two blocks that exchange h through global memory
SLSTM_CASES = [((1, 1, 1, 1), "none", False), ((2, 3, 7, 5), "random", True), ((2, 2, 9, 33), "left", True),
               ((1, 2, 4, 72), "random", True)]


@pytest.mark.parametrize("layout", ["cooperative", "per pair"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, kind, with_state", SLSTM_CASES)
def test_slstm_matches_reference(layout, dtype, shape, kind, with_state, emulator, monkeypatch):
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1" if layout == "per pair" else "0")
    B, H, T, D = shape
    inputs = slstm_inputs(B, H, T, D, torch.float64)
    state = slstm_state(B, H, D, torch.float64) if with_state else None
    mask = padding_mask(B, T, kind)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, state, mask)
    h, final, grads = outputs_and_gradients(
        emulated.slstm, {name: x.to(dtype) for name, x in inputs.items()},
        None if state is None else tuple(s.to(dtype) for s in state), mask,
    )
    assert_matches_reference([h, *final, *grads], [h_ref, *final_ref, *grads_ref], dtype)
    kernels = {"cooperative": "cooperative", "per pair": "slstm_forward_kernel"}
    assert launches()[0] == (kernels[layout], 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 8, 16), (3, 2, 5, 7)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mlstm_step_matches_reference(dtype, shape, with_mask, emulator):
    inputs, state = mlstm_step_inputs(*shape, torch.float64)
    mask = torch.arange(shape[0]) % 2 == 0 if with_mask else None
    h_ref, state_ref = mlstm_step(*inputs, state, mask=mask)
    h, new_state = emulated.mlstm_step(*(x.to(dtype) for x in inputs), tuple(s.to(dtype) for s in state), mask=mask)
    assert_matches_reference([h, *new_state], [h_ref, *state_ref], dtype)


# (B, H, T, Dqk, Dv), chunk size, padding, initial state: one step, odd sizes in one and in several chunks,
# several tiles of the memory and of h, chunks of 64 and a chunk size dividing nothing
CHUNKWISE_CASES = [((1, 1, 1, 1, 1), 1, "none", False), ((2, 3, 7, 5, 9), 16, "random", True),
                   ((2, 1, 7, 5, 9), 3, "left", False), ((2, 2, 130, 16, 40), 64, "left", True),
                   ((1, 2, 64, 64, 96), 64, "random", False), ((1, 2, 40, 20, 24), 13, "random", True)]


@pytest.mark.parametrize("shape, chunk_size, kind, with_state", CHUNKWISE_CASES)
def test_mlstm_chunkwise_matches_reference(shape, chunk_size, kind, with_state, emulator):
    assert_chunkwise_matches_reference(emulated.mlstm_chunkwise, shape, chunk_size, kind, with_state)


# relative error (norm) allowed against the float64 reference on the same rounded inputs: h and dq, dk, dv
# come back rounded to the input type, the tensor cores multiply (w K), S and the gradients' operands rounded
HALF_PRECISION = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("chunk_size", [16, 64, 13])  # multiples of 16 take the tensor cores, 13 does not
def test_mlstm_chunkwise_in_half_precision(dtype, chunk_size, emulator):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 1, 70, 32, generator=g).to(dtype) for _ in range(3))
    i, f = torch.randn(1, 1, 70, generator=g), torch.randn(1, 1, 70, generator=g) + 3
    inputs, mask = {"q": q, "k": k, "v": v, "i": i, "f": f}, padding_mask(1, 70, "left")
    h_ref, final_ref, grads_ref = outputs_and_gradients(
        lambda **kwargs: ops.mlstm(**kwargs, chunk_size=chunk_size, backend="native"),
        {name: x.double() for name, x in inputs.items()}, None, mask,
    )
    h, final, grads = outputs_and_gradients(
        lambda **kwargs: emulated.mlstm_chunkwise(**kwargs, chunk_size=chunk_size), inputs, None, mask
    )
    assert h.dtype == dtype
    for actual, expected in zip([h, *final, *grads], [h_ref, *final_ref, *grads_ref]):
        assert not actual.isnan().any(), "an output element was not written"
        error = (actual.double() - expected).norm() / expected.norm()
        assert error < HALF_PRECISION[dtype], f"relative error {error:.2e}"


# ---- packed rows (docs/design.md 1.7): where a sequence starts, every state starts afresh -------------------


@pytest.mark.parametrize("layout", ["cooperative", "per pair"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, kind, rows", SLSTM_PACKED_CASES)
def test_slstm_on_packed_rows(layout, dtype, shape, kind, rows, emulator, monkeypatch):
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1" if layout == "per pair" else "0")
    assert_slstm_packed(emulated.slstm, dtype, shape, kind, rows)
    assert launches()[0] == ({"cooperative": "cooperative", "per pair": "slstm_forward_kernel"}[layout], 0)


@pytest.mark.parametrize("shape, chunk_size, kind, rows", CHUNKWISE_PACKED_CASES)
def test_mlstm_chunkwise_on_packed_rows(shape, chunk_size, kind, rows, emulator):
    assert_chunkwise_packed(emulated.mlstm_chunkwise, shape, chunk_size, kind, rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlstm_step_on_packed_rows(dtype, emulator):
    assert_step_packed(emulated.mlstm_step, dtype)


# ---- the defects of the review, each where it showed ----------------------------------------------------


def test_mlstm_chunkwise_sums_log_forget_gates_over_spans(emulator):
    assert_spans_summed(emulated.mlstm_chunkwise)


def test_slstm_per_pair_backward_beyond_48_kb_of_shared_memory(emulator, monkeypatch):
    """float64 with D = 1229: 1,024 threads, each with the gradients of two cells, and 49,160 bytes of
    shared memory, which a launch gets only once the kernel's limit is raised."""
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1")
    inputs = slstm_inputs(1, 1, 1, 1229, torch.float64)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, None, None)
    h, final, grads = outputs_and_gradients(emulated.slstm, inputs, None, None)
    assert_matches_reference([h, *final, *grads], [h_ref, *final_ref, *grads_ref], torch.float64)
    backward = build.launches()[-1]
    assert (backward["name"], backward["threads"], backward["shared"]) == ("slstm_backward_kernel", 1024, 49160)


def test_slstm_falls_back_to_per_pair_where_the_cooperative_launch_is_refused(emulator, monkeypatch):
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "0")
    inputs, state = slstm_inputs(2, 2, 5, 16, torch.float32), slstm_state(2, 2, 16, torch.float32)
    mask = padding_mask(2, 5, "random")
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, state, mask)
    emulator.fail_cooperative_launches(True)
    try:
        h, final, grads = outputs_and_gradients(emulated.slstm, inputs, state, mask)
    finally:
        emulator.fail_cooperative_launches(False)
    assert_matches_reference([h, *final, *grads], [h_ref, *final_ref, *grads_ref], torch.float32)
    refused = 720  # cudaErrorCooperativeLaunchTooLarge
    assert launches() == [("cooperative", refused), ("slstm_forward_kernel", 0), ("cooperative", refused),
                          ("slstm_backward_kernel", 0)]


def test_shared_memory_limit_raised_once_per_kernel(emulator, monkeypatch):
    """Cooperative launches of 65 KB and more (float64, D = 64: two blocks of 32 cells per head) at two batch
    sizes, twice: each kernel's limit is raised at most once, not at every launch, where host threads
    launching other sizes would race with it."""
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "0")
    for _ in range(2):
        for B in (1, 2):
            outputs_and_gradients(emulated.slstm, slstm_inputs(B, 1, 2, 64, torch.float64), None, None)
    assert all(launch == ("cooperative", 0) for launch in launches())
    assert build.attribute_sets() <= 2
