"""The CUDA kernels (`xlstm_hf/csrc/cuda`) on a GPU against the PyTorch reference in float64 on the CPU:
outputs, final states and every gradient (initial state included), on odd shapes, with padding, initial
states and packed rows, in float32 and float64, with the memory the outputs land in poisoned with NaN so that
an element a kernel does not write shows; whole models on the GPU against the CPU. Skipped without a GPU;
`scripts/gpu_check.sh` runs them on a GPU machine, where torch alone suffices (the model tests need
transformers). tests/test_cuda_emulation.py runs the kernels on the CPU under an emulator."""

import sys
import types
from functools import partial
from pathlib import Path

import pytest
import torch
from kernel_inputs import (
    RELATIVE,
    mlstm_step_inputs,
    outputs_and_gradients,
    padding_mask,
    slstm_inputs,
    slstm_state,
    step_outputs_and_gradients,
)
from torch.testing import assert_close

try:
    from xlstm_hf import XLSTMConfig, XLSTMForCausalLM
    from xlstm_hf.modeling_xlstm import forget_at_starts
except ImportError:  # no transformers (a GPU machine with torch alone): xlstm_hf.ops, torch only, from a bare package
    XLSTMConfig = XLSTMForCausalLM = None
    sys.modules["xlstm_hf"] = types.ModuleType("xlstm_hf")
    sys.modules["xlstm_hf"].__path__ = [str(Path(__file__).resolve().parents[1] / "src" / "xlstm_hf")]

    def forget_at_starts(i, f, resets):  # modeling_xlstm's, which imports transformers
        return i, f.masked_fill(resets[:, None, :], MASKED_LOG_GATE)

from xlstm_hf import ops
from xlstm_hf.ops import compiled
from xlstm_hf.ops.extension import extension_has_cuda, extension_status
from xlstm_hf.ops.gates import MASKED_LOG_GATE
from xlstm_hf.ops.mlstm import mlstm_step
from xlstm_hf.ops.slstm import slstm_recurrent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")


@pytest.fixture(autouse=True)
def nan_poisoned_memory():
    """Fill a large block of the caching allocator with NaN and free it: the kernels' outputs reuse it."""
    assert extension_has_cuda(), f"a GPU is here, so the CUDA kernels must build: {extension_status()[1]}"
    torch.cuda.empty_cache()
    torch.full((2**26,), float("nan"), device="cuda")
    yield
    torch.cuda.synchronize()


# Against the float64 reference: float32 kernels carry float32 rounding of sums over up to a few hundred
# terms (1e-4 of the scale at D = 300), float64 kernels only the order of their sums
TO_FLOAT64 = {torch.float32: 1e-4, torch.float64: 1e-11}


def assert_matches_reference(actual, expected, dtype):
    """Each pair close to TO_FLOAT64[dtype] of the expected tensor's scale; every element written."""
    for a, e in zip(actual, expected):
        assert not a.isnan().any(), "an output element was not written"
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        assert_close(a, e.to(a.dtype), rtol=TO_FLOAT64[dtype], atol=TO_FLOAT64[dtype] * scale)


def on_gpu(tensors):
    if tensors is None:
        return None
    if isinstance(tensors, dict):
        return {name: value.cuda() for name, value in tensors.items()}
    if isinstance(tensors, torch.Tensor):
        return tensors.cuda()
    return tuple(on_gpu(t) for t in tensors)


def to_cpu(tensors):
    return [t.cpu() for t in tensors]


def chunkwise_on_gpu(q, k, v, i, f, mask, initial_state, **options):
    """The CUDA chunkwise mLSTM as a function of CPU tensors."""
    return compiled.mlstm_chunkwise(*on_gpu((q, k, v, i, f)), mask=on_gpu(mask), initial_state=on_gpu(initial_state),
                                    **options)


SLSTM_SHAPES = [(1, 1, 1, 1), (2, 3, 7, 5), (3, 2, 37, 16), (2, 4, 64, 64), (1, 2, 5, 300)]


@pytest.mark.parametrize("layout", ["cooperative", "per pair"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SLSTM_SHAPES)
@pytest.mark.parametrize("kind", ["none", "left", "random"])
@pytest.mark.parametrize("with_state", [False, True])
def test_slstm_cuda_kernel_matches_reference(layout, dtype, shape, kind, with_state, monkeypatch):
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1" if layout == "per pair" else "0")
    B, H, T, D = shape
    inputs = slstm_inputs(B, H, T, D, torch.float64)
    state = slstm_state(B, H, D, torch.float64) if with_state else None
    mask = padding_mask(B, T, kind)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, state, mask)
    cast = {name: value.to(dtype) for name, value in inputs.items()}
    h, final, grads = outputs_and_gradients(
        compiled.slstm, on_gpu(cast), on_gpu(None if state is None else tuple(s.to(dtype) for s in state)),
        on_gpu(mask),
    )
    assert h.is_cuda and h.dtype == dtype
    assert_matches_reference(to_cpu([h, *final, *grads]), [h_ref, *final_ref, *grads_ref], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 8, 16), (3, 2, 5, 7), (256, 4, 64, 128)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mlstm_step_cuda_kernel_matches_reference(dtype, shape, with_mask):
    inputs, state = mlstm_step_inputs(*shape, torch.float64)
    mask = torch.arange(shape[0]) % 2 == 0 if with_mask else None
    outputs_ref, grads_ref = step_outputs_and_gradients(mlstm_step, inputs, state, mask)
    outputs, grads = step_outputs_and_gradients(
        compiled.mlstm_step, on_gpu(tuple(t.to(dtype) for t in inputs)), on_gpu(tuple(t.to(dtype) for t in state)),
        on_gpu(mask),
    )
    assert_matches_reference(to_cpu(outputs + list(grads)), outputs_ref + list(grads_ref), dtype)


CHUNKWISE_SHAPES = [(1, 1, 1, 1, 1), (2, 3, 7, 5, 9), (2, 2, 130, 16, 40), (1, 2, 64, 64, 96)]


def chunkwise_inputs(B, H, T, Dqk, Dv, with_state, seed=4):
    """q, k, v, i, f (forget gates mostly open) and an initial state or None, float32 values held in float64."""
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "q": torch.randn(B, H, T, Dqk, generator=g),
        "k": torch.randn(B, H, T, Dqk, generator=g),
        "v": torch.randn(B, H, T, Dv, generator=g),
        "i": torch.randn(B, H, T, generator=g) * 2,
        "f": torch.randn(B, H, T, generator=g) * 2 + 3,
    }
    state = (torch.randn(B, H, Dqk, Dv, generator=g), torch.randn(B, H, Dqk, generator=g),
             torch.randn(B, H, generator=g)) if with_state else None
    return {name: x.double() for name, x in inputs.items()}, None if state is None else tuple(s.double() for s in state)


def assert_chunkwise_matches_reference(kernel, shape, chunk_size, kind, with_state, dtype=torch.float32):
    """`kernel` (the chunkwise mLSTM's calling convention, CPU tensors of `dtype`) against the float64 reference
    of the same chunk size: outputs, states and gradients in `dtype`, each to `dtype`'s rounding."""
    B, H, T, Dqk, Dv = shape
    inputs, state = chunkwise_inputs(B, H, T, Dqk, Dv, with_state)
    mask = padding_mask(B, T, kind)
    h_ref, final_ref, grads_ref = outputs_and_gradients(
        lambda **kwargs: ops.mlstm(**kwargs, chunk_size=chunk_size, backend="native"), inputs, state, mask
    )
    h, final, grads = outputs_and_gradients(
        lambda **kwargs: kernel(**kwargs, chunk_size=chunk_size),
        {name: x.to(dtype) for name, x in inputs.items()}, None if state is None else tuple(s.to(dtype) for s in state),
        mask,
    )
    assert h.dtype == dtype and all(s.dtype == dtype for s in final)
    assert_matches_reference(to_cpu([h, *final, *grads]), [h_ref, *final_ref, *grads_ref], dtype)


def nearly_closed_forget_gates(seed=6):
    """Chunkwise inputs whose forget gates are nearly closed (log f about -50) for the first 20 of 64 steps and
    open after: the sums of log f from the chunk start reach -1,000, so that the log forget between two later
    steps taken as a difference of those sums keeps only float32's ulp at 1,000 (6e-5; errors of 2e-4 in h)."""
    inputs, _ = chunkwise_inputs(1, 2, 64, 16, 16, False, seed)
    inputs["f"][..., :20] = (inputs["f"][..., :20] - 53).float().double()
    return inputs


def assert_spans_summed(kernel):
    """`kernel` (the chunkwise mLSTM's calling convention) on nearly_closed_forget_gates in float32, one chunk of
    64, against the float64 reference, to 1e-5 of each result's scale: sums over spans hold 3e-6, differences of
    running sums miss by 2e-4."""
    inputs = nearly_closed_forget_gates()
    h_ref, final_ref, grads_ref = outputs_and_gradients(
        lambda **kwargs: ops.mlstm(**kwargs, chunk_size=64, backend="native"), inputs, None, None
    )
    h, final, grads = outputs_and_gradients(
        lambda **kwargs: kernel(**kwargs, chunk_size=64), {name: x.float() for name, x in inputs.items()}, None, None
    )
    for actual, expected in zip([h, *final, *grads], [h_ref, *final_ref, *grads_ref]):
        scale = max(1.0, expected.abs().max().item())
        assert_close(actual.cpu().double(), expected, rtol=1e-5, atol=1e-5 * scale)


# ---- packed rows (docs/design.md 1.7): where a sequence starts, every state starts afresh ---------------------
# Checks shared with tests/test_cuda_emulation.py, each taking the kernel as a function of CPU tensors.


def packed_row_starts(T, rows, mask):
    """resets [len(rows), T]: True at the steps each row lists, all real ones (as packing.sequence_starts gives
    them)."""
    resets = torch.zeros(len(rows), T, dtype=torch.bool)
    for b, steps in enumerate(rows):
        resets[b, list(steps)] = True
    assert mask is None or not (resets & ~mask).any()
    return resets


def one_by_one(run, resets, sequences):
    """`run` (a recurrence with the calling convention of outputs_and_gradients) on each sequence of every packed
    row alone: the inputs named in `sequences` ([B, H, T, ...]) cut at the starts, each row's first sequence from
    the initial state unless it starts at step 0, every other one from the zero state; the outputs joined along
    T, the final state that of each row's last sequence."""

    def packed(*, mask=None, initial_state=None, **inputs):
        B, _, T = inputs[sequences[0]].shape[:3]
        outputs, finals = [], []
        for b, row in enumerate(resets.tolist()):
            bounds = [0, *(t for t in range(1, T) if row[t]), T]
            pieces = []
            for begin, end in zip(bounds, bounds[1:]):
                fresh = begin > 0 or row[0] or initial_state is None
                h, final = run(
                    **{name: x[b : b + 1, :, begin:end] if name in sequences else x for name, x in inputs.items()},
                    mask=None if mask is None else mask[b : b + 1, begin:end],
                    initial_state=None if fresh else tuple(s[b : b + 1] for s in initial_state),
                )
                pieces.append(h)
            outputs.append(torch.cat(pieces, dim=2))
            finals.append(final)
        return torch.cat(outputs), tuple(torch.cat(parts) for parts in zip(*finals))

    return packed


def in_memory_units(run):
    """An mLSTM `run` whose final state comes back as the memory itself, (C e^m, n e^m), whatever stabiliser m
    it is kept under: a packed row stabilises a start by its input gate, a sequence alone by max(log f, i)."""

    def wrapped(**kwargs):
        h, (C, n, m) = run(**kwargs)
        return h, (C * m.exp()[..., None, None], n * m.exp()[..., None])

    return wrapped


def assert_packed_matches(kernel, references, inputs, state, mask, dtype):
    """`kernel` on `inputs` and `state` cast to `dtype` against each float64 reference, outputs and gradients."""
    h, final, grads = outputs_and_gradients(
        kernel, {name: x.to(dtype) for name, x in inputs.items()}, tuple(s.to(dtype) for s in state), mask
    )
    for reference in references:
        h_ref, final_ref, grads_ref = outputs_and_gradients(reference, inputs, state, mask)
        assert_matches_reference(to_cpu([h, *final, *grads]), [h_ref, *final_ref, *grads_ref], dtype)


# (B, H, T, D), padding, starts of each row: at step 0, inside, consecutive, at the last step, at the last real
# one, after a padded one; D = 48 splits each head over two blocks of a cooperative launch in float64
SLSTM_PACKED_CASES = [((3, 2, 9, 5), "right", [(0, 4), (3, 4, 8), (2, 5)]), ((2, 1, 6, 48), "random", [(2, 5), (0, 2)])]


def assert_slstm_packed(kernel, dtype, shape, kind, rows):
    """`kernel` (slstm_recurrent's calling convention) on packed rows against the reference given the same resets
    and against the sequences run one by one, both in float64 (from an initial state that the starts at step 0
    discard)."""
    B, H, T, D = shape
    inputs, state = slstm_inputs(B, H, T, D, torch.float64), slstm_state(B, H, D, torch.float64)
    mask = padding_mask(B, T, kind)
    resets = packed_row_starts(T, rows, mask)
    references = [partial(slstm_recurrent, resets=resets), one_by_one(slstm_recurrent, resets, ["gates_x"])]
    assert_packed_matches(partial(kernel, resets=resets), references, inputs, state, mask, dtype)


# (B, H, T, Dqk, Dv), chunk size, padding, starts of each row: at step 0, at a chunk edge, inside a chunk,
# consecutive ones, at the last step and at the last real one
CHUNKWISE_PACKED_CASES = [((2, 1, 21, 8, 12), 8, "none", [(0, 8, 11), (5, 6, 20)]),
                          ((2, 1, 13, 5, 9), 4, "right", [(4, 9, 10), (0, 2, 8)])]


def assert_chunkwise_packed(kernel, shape, chunk_size, kind, rows):
    """`kernel` (the chunkwise mLSTM's calling convention, float32) on packed rows, f = -1e30 at the starts as
    forget_at_starts sets it: against the float64 reference given the same gates, and at eps 1e-30, the memory in
    its own units, against the sequences run one by one through the float64 reference."""
    B, H, T, Dqk, Dv = shape
    inputs, state = chunkwise_inputs(B, H, T, Dqk, Dv, True)
    mask = padding_mask(B, T, kind)
    resets = packed_row_starts(T, rows, mask)

    def packed(run):
        def run_packed(i, f, **kwargs):
            i, f = forget_at_starts(i, f, resets)
            return run(i=i, f=f, **kwargs)

        return run_packed

    def reference(eps):
        return lambda **kwargs: ops.mlstm(**kwargs, chunk_size=chunk_size, eps=eps, backend="native")

    def on_kernel(eps):
        return lambda **kwargs: kernel(**kwargs, chunk_size=chunk_size, eps=eps)

    assert_packed_matches(packed(on_kernel(1e-6)), [packed(reference(1e-6))], inputs, state, mask, torch.float32)
    alone = in_memory_units(one_by_one(reference(1e-30), resets, ["q", "k", "v", "i", "f"]))
    assert_packed_matches(in_memory_units(packed(on_kernel(1e-30))), [alone], inputs, state, mask, torch.float32)


def assert_step_packed(step, dtype):
    """`step` (mlstm_step's calling convention) starting sequences in rows 0 and 2 of 3 (f = -1e30) from a
    non-zero state: against the float64 reference given the same gates, and at eps 1e-30, the memory in its own
    units, against a step of the reference from the zero state with the gates as given."""
    (q, k, v, i, f), state = mlstm_step_inputs(3, 2, 8, 5, torch.float64)  # f, i [B, H]
    resets = torch.tensor([True, False, True])
    f_packed = forget_at_starts(i[..., None], f[..., None], resets[:, None])[1][..., 0]

    def run(fn, f, state, dtype):  # -> h, the new state and its memory in its own units
        h, (C, n, m) = fn(*(x.to(dtype) for x in (q, k, v, i, f)), tuple(s.to(dtype) for s in state), eps=1e-30)
        return [x.cpu() for x in (h, C, n, m, C * m.exp()[..., None, None], n * m.exp()[..., None])]

    h, C, n, m, C_memory, n_memory = run(step, f_packed, state, dtype)
    assert_matches_reference([h, C, n, m], run(mlstm_step, f_packed, state, torch.float64)[:4], dtype)
    zero = tuple(torch.where(resets.view(-1, *[1] * (s.dim() - 1)), 0.0, s) for s in state)
    h_alone, *_, C_alone, n_alone = run(mlstm_step, f, zero, torch.float64)
    assert_matches_reference([h, C_memory, n_memory], [h_alone, C_alone, n_alone], dtype)


@pytest.mark.parametrize("layout", ["cooperative", "per pair"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, kind, rows", [*SLSTM_PACKED_CASES, ((2, 4, 40, 64), "right", [(0, 17), (9, 10, 26)]),
                                               ((1, 2, 6, 300), "none", [(3, 4)])])
def test_slstm_cuda_kernel_on_packed_rows(layout, dtype, shape, kind, rows, monkeypatch):
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1" if layout == "per pair" else "0")

    def kernel(mask, initial_state, resets, **inputs):
        return compiled.slstm(**on_gpu(inputs), mask=on_gpu(mask), initial_state=on_gpu(initial_state),
                              resets=on_gpu(resets))

    assert_slstm_packed(kernel, dtype, shape, kind, rows)


@pytest.mark.parametrize("shape, chunk_size, kind, rows",
                         [*CHUNKWISE_PACKED_CASES, ((2, 2, 130, 16, 40), 64, "right", [(0, 64, 100), (63, 64, 65)])])
def test_mlstm_chunkwise_cuda_on_packed_rows(shape, chunk_size, kind, rows):
    assert_chunkwise_packed(chunkwise_on_gpu, shape, chunk_size, kind, rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlstm_step_cuda_kernel_on_packed_rows(dtype):
    def step(q, k, v, i, f, state, **options):
        return compiled.mlstm_step(*on_gpu((q, k, v, i, f)), on_gpu(state), **options)

    assert_step_packed(step, dtype)


@pytest.mark.parametrize("shape", CHUNKWISE_SHAPES)
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
@pytest.mark.parametrize("kind", ["none", "left", "random"])
@pytest.mark.parametrize("with_state", [False, True])
def test_mlstm_chunkwise_cuda_matches_reference(shape, chunk_size, kind, with_state):
    assert_chunkwise_matches_reference(chunkwise_on_gpu, shape, chunk_size, kind, with_state)


def test_mlstm_chunkwise_cuda_sums_log_forget_gates_over_spans():
    assert_spans_summed(chunkwise_on_gpu)


def test_slstm_per_pair_backward_beyond_48_kb_of_shared_memory(monkeypatch):
    """float64 with D = 1229: the backward's 5 D values per block take 49,160 bytes, over the default limit."""
    monkeypatch.setenv("XLSTM_HF_SLSTM_PER_PAIR", "1")
    inputs = slstm_inputs(1, 1, 2, 1229, torch.float64)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, None, None)
    h, final, grads = outputs_and_gradients(compiled.slstm, on_gpu(inputs), None, None)
    assert_matches_reference(to_cpu([h, *final, *grads]), [h_ref, *final_ref, *grads_ref], torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("chunk_size", [16, 64, 13])  # multiples of 16 take the tensor cores, 13 does not
def test_mlstm_chunkwise_cuda_in_half_precision(dtype, chunk_size):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 4, 200, 64, generator=g).to(dtype) for _ in range(3))
    i, f = torch.randn(2, 4, 200, generator=g), torch.randn(2, 4, 200, generator=g) + 3
    mask = padding_mask(2, 200, "left")
    inputs = {"q": q, "k": k, "v": v, "i": i, "f": f}

    def reference(**kwargs):
        return ops.mlstm(**kwargs, chunk_size=chunk_size, backend="native")

    def kernel(**kwargs):
        return ops.mlstm(**kwargs, chunk_size=chunk_size, backend="cuda")

    h_ref, _, grads_ref = outputs_and_gradients(reference, {n: x.double() for n, x in inputs.items()}, None, mask)
    h, _, grads = outputs_and_gradients(kernel, on_gpu(inputs), None, on_gpu(mask))
    assert h.dtype == dtype
    for actual, expected in zip([h, *grads], [h_ref, *grads_ref]):
        error = (actual.double().cpu() - expected).norm() / expected.norm()
        assert error < 2e-2, f"relative error {error:.2e}"


def test_half_precision_inputs_run_in_float32():
    inputs = slstm_inputs(2, 2, 9, 8, torch.float32)
    half = {name: value.to(torch.bfloat16).cuda() for name, value in inputs.items()}
    h, final = compiled.slstm(**half)
    h_ref, final_ref = slstm_recurrent(**{name: value.float() for name, value in half.items()})
    assert h.dtype == torch.bfloat16 and all(s.dtype == torch.float32 for s in final)
    assert_close(h.float(), h_ref.to(torch.bfloat16).float())
    assert_matches_reference(to_cpu(final), to_cpu(final_ref), torch.float32)


def test_the_cuda_kernels_run_where_asked_for():
    gpu = torch.device("cuda")
    for op in ("slstm", "mlstm_step", "mlstm_chunkwise"):
        assert ops.choose_backend(op, gpu, "cuda")[0] == "cuda"
        assert ops.choose_backend(op, gpu)[0] == ("cuda" if ops.CUDA_KERNELS_VALIDATED else "native")


@pytest.mark.skipif(XLSTMConfig is None, reason="transformers is not installed")
@pytest.mark.parametrize("family", ["neurips", "large"])
def test_model_on_the_gpu_matches_the_cpu(family):
    torch.manual_seed(0)
    config = XLSTMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_heads=2, chunk_size=4,
                         layer_types=["mlstm", "slstm", "mlstm"], block_family=family)
    cpu_model = XLSTMForCausalLM(config)
    gpu_model = XLSTMForCausalLM(XLSTMConfig.from_dict({**config.to_dict(), "backend": "cuda"})).cuda()
    gpu_model.load_state_dict(cpu_model.state_dict())
    ids = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(1))
    losses = [model(ids.to(model.device), labels=ids.to(model.device)).loss for model in (cpu_model, gpu_model)]
    for loss in losses:
        loss.backward()
    assert_close(losses[1].cpu(), losses[0], rtol=1e-5, atol=1e-6)
    for (name, p_cpu), p_gpu in zip(cpu_model.named_parameters(), gpu_model.parameters()):
        scale = max(1.0, p_cpu.grad.abs().max().item())
        assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=RELATIVE[torch.float32] * 10, atol=1e-5 * scale, msg=name)
    greedy = dict(max_new_tokens=8, do_sample=False)
    tokens = [model.eval().generate(ids[:, :5].to(model.device), **greedy).cpu() for model in (cpu_model, gpu_model)]
    assert torch.equal(tokens[0], tokens[1])
