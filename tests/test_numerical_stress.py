"""Numerical stress: the recurrences over 65,536 steps (float32 and bfloat16), extreme gate pre-activations
(+-1e4, mixed signs), long runs of forget gates near 0 and near 1, and 100,000 generated tokens. Outputs,
states and gradients stay finite, and the chunkwise, parallel and recurrent forms agree, in the ops and
through a tiny model.

Agreement is measured as |a - b| <= tol * (1 + |b|): relative where |h| > 1, absolute below. The mLSTM read
h = C^T q / max(|n^T q|, exp(-m)) grows where |n^T q| is small (to ~220 over 65,536 ordinary steps, ~2,300
after thousands of steps with forget gates near 1), and carries the rounding of C and n with it. Each
tolerance is a few times the largest error measured, written beside it; the recurrent form, which adds
into the memory one step at a time, is the least exact of the three.
"""

from functools import partial, wraps

import pytest
import torch
from torch.testing import assert_close
from torch.utils._pytree import tree_leaves

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM, ops
from xlstm_hf.ops.mlstm import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent
from xlstm_hf.ops.mlstm.chunkwise import zero_mlstm_state
from xlstm_hf.ops.slstm import slstm_recurrent

pytestmark = pytest.mark.usefixtures("single_thread")

LONG = 65_536  # steps of the long-sequence tests
PREFIX = 2_048  # steps the parallel (quadratic) form runs: its [T, T] matrices fit in memory here
GENERATED = 100_000  # tokens of the generation test
VOCAB = 32
BF16 = 2**-7  # two bf16 roundings (relative error up to 2^-8 each)


def assert_agree(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = ""):
    """|actual - expected| <= tol * (1 + |expected|) everywhere, and both finite."""
    actual, expected = actual.double(), expected.double()
    assert torch.isfinite(actual).all() and torch.isfinite(expected).all(), what
    assert_close(actual, expected, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def assert_finite(*tensors: torch.Tensor, what: str = ""):
    for tensor in tree_leaves(tensors):
        if isinstance(tensor, torch.Tensor):
            assert torch.isfinite(tensor).all(), what


def gaussian(generator: torch.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale + shift


def mlstm_inputs(B: int, H: int, T: int, D: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """q, k, v ~ N(0, 1); input gates ~ N(0, 2), forget gates ~ N(3, 2) (mostly open: memories of tens of steps)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "q": gaussian(g, B, H, T, D), "k": gaussian(g, B, H, T, D), "v": gaussian(g, B, H, T, D),
        "i": gaussian(g, B, H, T, scale=2.0), "f": gaussian(g, B, H, T, scale=2.0, shift=3.0),
    }


def slstm_inputs(B: int, H: int, T: int, D: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """gates_x ~ N(0, 2) with forget bias +3, recurrent kernel ~ N(0, 0.5), bias ~ N(0, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    gates_x = gaussian(g, B, H, T, 4, D, scale=2.0)
    gates_x[:, :, :, 1] += 3.0
    return {
        "gates_x": gates_x, "recurrent_kernel": gaussian(g, H, D, 4, D, scale=0.5),
        "bias": gaussian(g, H, 4, D, scale=0.5),
    }


def cast(inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {name: x.to(dtype) for name, x in inputs.items()}


def prefix(inputs: dict[str, torch.Tensor], steps: int) -> dict[str, torch.Tensor]:
    """The first `steps` steps of mLSTM inputs ([B, H, T, ...])."""
    return {name: x[:, :, :steps] for name, x in inputs.items()}


def mlstm_in_steps(inputs: dict[str, torch.Tensor], state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
    """The mLSTM one step per call through `ops.mlstm`: the decoding path (the compiled step where it is built)."""
    q = inputs["q"]
    state, outputs = state if state is not None else zero_mlstm_state(q, inputs["v"]), []
    for t in range(q.shape[2]):
        h, state = ops.mlstm(**{name: x[:, :, t : t + 1] for name, x in inputs.items()}, initial_state=state)
        outputs.append(h)
    return torch.cat(outputs, dim=2), state


# ---- 1. 65,536 steps through the ops -----------------------------------------------------------------


@pytest.fixture(scope="module")
def long_mlstm_inputs() -> dict[str, torch.Tensor]:
    return mlstm_inputs(B=1, H=2, T=LONG, D=4)


def test_mlstm_65536_steps_in_float32_stay_finite_and_forms_agree(long_mlstm_inputs):
    """Chunkwise (chunks of 64) against the recurrent reference over all 65,536 steps, and the parallel form on
    the first 2,048 steps."""
    inputs = long_mlstm_inputs
    h, state = mlstm_chunkwise(**inputs, chunk_size=64)
    h_rec, state_rec = mlstm_recurrent(**inputs)
    h_par, state_par = mlstm_parallel(**prefix(inputs, PREFIX))
    _, state_prefix = mlstm_chunkwise(**prefix(inputs, PREFIX), chunk_size=64)
    assert_finite(h, state, h_rec, state_rec, h_par, state_par)
    # measured 3.5e-5 (from float64: the recurrent form 3.5e-5, the chunkwise 1.3e-5) and 4e-6 (7e-4 while the
    # chunkwise form took sums of log f over spans of steps as differences of cumulative sums)
    assert_agree(h, h_rec, 2e-4, "chunkwise-recurrent h")
    assert_agree(h[:, :, :PREFIX], h_par, 2e-4, "chunkwise-parallel h")
    for s, s_rec, s_prefix, s_par in zip(state, state_rec, state_prefix, state_par):
        assert_agree(s, s_rec, 1e-5, "chunkwise-recurrent state")
        assert_agree(s_prefix, s_par, 1e-5, "chunkwise-parallel state")


def test_mlstm_65536_steps_in_bfloat16_stay_finite_and_forms_agree(long_mlstm_inputs):
    """The ops compute in float32 whatever the input dtype, so bf16 inputs give the float32 result on their
    values, rounded to bf16 (one rounding, 2^-8 relative, apart). The last 1,024 steps run one step per call
    (the decoding path) from the chunkwise state before them; the parallel form runs the first 2,048."""
    inputs = cast(long_mlstm_inputs, torch.bfloat16)
    split = LONG - 1024
    h, state = mlstm_chunkwise(**inputs, chunk_size=64)
    h_float32, state_float32 = mlstm_chunkwise(**cast(inputs, torch.float32), chunk_size=64)
    _, state_before_tail = mlstm_chunkwise(**prefix(inputs, split), chunk_size=64)
    tail = {name: x[:, :, split:] for name, x in inputs.items()}
    h_tail, state_tail = mlstm_in_steps(tail, state_before_tail)
    h_par, _ = mlstm_parallel(**prefix(inputs, PREFIX))
    assert h.dtype == h_tail.dtype == h_par.dtype == torch.bfloat16
    assert_finite(h, state, h_tail, state_tail, h_par)
    assert_agree(h, h_float32, BF16, "bf16-float32 h")
    assert_agree(h[:, :, split:], h_tail, BF16, "bf16 chunkwise-steps h")
    assert_agree(h[:, :, :PREFIX], h_par, BF16, "bf16 chunkwise-parallel h")
    for s, s_float32, s_tail in zip(state, state_float32, state_tail):
        assert_agree(s, s_float32, 1e-6, "bf16-float32 state")
        assert_agree(s, s_tail, 1e-5, "bf16 chunkwise-steps state")


def test_slstm_65536_steps_in_float32_stay_finite_and_kernels_agree():
    """The sLSTM has only the recurrent form: the fused kernel (where built) against the reference loop."""
    inputs = slstm_inputs(B=1, H=2, T=LONG, D=4)
    h, state = ops.slstm(**inputs)
    h_ref, state_ref = slstm_recurrent(**inputs)
    assert_finite(h, state, h_ref, state_ref)
    assert_agree(h, h_ref, 1e-5, "slstm kernel-reference h")  # measured 6e-7
    for s, s_ref in zip(state, state_ref):
        assert_agree(s, s_ref, 1e-5, "slstm kernel-reference state")


def test_slstm_65536_steps_in_bfloat16_stay_finite_and_kernels_agree():
    """bf16 inputs: the float32 result on their values, rounded; the reference loop continues the kernel's state
    over the last 1,024 steps."""
    inputs = cast(slstm_inputs(B=1, H=2, T=LONG, D=4), torch.bfloat16)
    split = LONG - 1024
    weights = {name: inputs[name] for name in ("recurrent_kernel", "bias")}
    h, state = ops.slstm(**inputs)
    h_float32, state_float32 = ops.slstm(**cast(inputs, torch.float32))
    _, state_before_tail = ops.slstm(inputs["gates_x"][:, :, :split], **weights)
    h_tail, state_tail = slstm_recurrent(inputs["gates_x"][:, :, split:], **weights, initial_state=state_before_tail)
    assert h.dtype == h_tail.dtype == torch.bfloat16
    assert_finite(h, state, h_tail, state_tail)
    assert_agree(h, h_float32, BF16, "slstm bf16-float32 h")
    assert_agree(h[:, :, split:], h_tail, BF16, "slstm bf16 kernel-reference h")
    for s, s_float32, s_tail in zip(state, state_float32, state_tail):
        assert_agree(s, s_float32, 1e-6, "slstm bf16-float32 state")
        assert_agree(s, s_tail, 1e-5, "slstm bf16 kernel-reference state")


# ---- 2. extreme gate pre-activations -----------------------------------------------------------------


def extreme_gates(kind: str, generator: torch.Generator, *shape: int) -> torch.Tensor:
    sign = torch.randint(0, 2, shape, generator=generator) * 2.0 - 1.0
    if kind == "+-1e4":
        return 1e4 * sign
    if kind == "uniform":
        return (torch.rand(shape, generator=generator) * 2 - 1) * 1e4
    # "+-1e4 among moderate": half the steps at +-1e4, the others ~ N(0, 3)
    return torch.where(torch.rand(shape, generator=generator) < 0.5, 1e4 * sign, gaussian(generator, *shape, scale=3.0))


# (h, final state) tolerances. Largest errors measured against the recurrent form: "+-1e4" 6e-6 and 4e-8 (sums
# of +-1e4 are exact in float32), "uniform" 5e-6 and 0, "+-1e4 among moderate" 1.5e-2 and 2e-5: float32 resolves
# 1e4 only to 1e-3, so a moderate gate summed with extreme ones moves a weight by up to 1e-3 (relative), and
# h by ten times that where |n^T q| is small (h = 43 there; against float64 the recurrent form is 2.5e-3 off,
# the chunkwise form 1.2e-2).
EXTREME_TOLERANCES = {"+-1e4": (2e-5, 1e-6), "uniform": (2e-5, 1e-6), "+-1e4 among moderate": (5e-2, 1e-4)}
MLSTM_FORMS = {
    "parallel": mlstm_parallel,
    "chunkwise-1": partial(mlstm_chunkwise, chunk_size=1),
    "chunkwise-16": partial(mlstm_chunkwise, chunk_size=16),
    "chunkwise-64": partial(mlstm_chunkwise, chunk_size=64),
}


def outputs_and_gradients(fn, inputs: dict, **kwargs):
    """(outputs, final state, gradients of all inputs) of `fn` under a fixed random linear loss."""
    leaves = {name: x.clone().requires_grad_() for name, x in inputs.items()}
    state = tuple(s.clone().requires_grad_() for s in kwargs.pop("initial_state", ()))
    h, final = fn(**leaves, initial_state=state or None, **kwargs)
    g = torch.Generator().manual_seed(1)
    loss = sum((out * gaussian(g, *out.shape)).sum() for out in (h, *final))
    grads = torch.autograd.grad(loss, [*leaves.values(), *state])
    return h.detach(), tuple(s.detach() for s in final), grads


@pytest.mark.parametrize("masked", [False, True], ids=["unpadded", "random-padding"])
@pytest.mark.parametrize("kind", list(EXTREME_TOLERANCES))
def test_mlstm_extreme_gates_stay_finite_and_forms_agree(kind, masked):
    """Input and forget gate pre-activations of +-1e4 (mixed signs), 100 steps (chunks of 16 and 64 with a
    remainder), from a non-empty memory. Before the floor exp(-m) of the normaliser was capped, an input gate
    of -1e4 over a forgotten memory made it inf and every gradient of the gates NaN (0 * inf)."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 2, 100, 4
    inputs = mlstm_inputs(B, H, T, D)
    inputs["i"], inputs["f"] = (extreme_gates(kind, g, B, H, T) for _ in range(2))
    state = (gaussian(g, B, H, D, D), gaussian(g, B, H, D), gaussian(g, B, H))
    mask = (torch.rand(B, T, generator=g) < 0.7) if masked else None
    h_rec, state_rec, grads_rec = outputs_and_gradients(mlstm_recurrent, inputs, mask=mask, initial_state=state)
    assert_finite(h_rec, state_rec, grads_rec, what="recurrent")
    h_tol, state_tol = EXTREME_TOLERANCES[kind]
    for name, fn in MLSTM_FORMS.items():
        h, final, grads = outputs_and_gradients(fn, inputs, mask=mask, initial_state=state)
        assert_finite(h, final, grads, what=name)
        assert_agree(h, h_rec, h_tol, f"extreme {kind} {name} h")
        for s, s_rec in zip(final, state_rec):
            assert_agree(s, s_rec, state_tol, f"extreme {kind} {name} state")


@pytest.mark.parametrize("kind", list(EXTREME_TOLERANCES))
def test_slstm_extreme_gates_stay_finite_and_kernels_agree(kind):
    """All four gate pre-activations at +-1e4: the kernel and the reference loop, outputs, states and gradients.
    Measured: the two agree to 1.4e-3 (h in [-1, 1], each 1e-3 from float64): at 1e4 float32 resolves the
    recurrent and bias terms (about 1) added to the gates only to 1e-3."""
    g = torch.Generator().manual_seed(0)
    inputs = slstm_inputs(B=2, H=2, T=100, D=4)
    inputs["gates_x"] = extreme_gates(kind, g, *inputs["gates_x"].shape)
    h_ref, state_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs)
    h, state, grads = outputs_and_gradients(ops.slstm, inputs)
    assert_finite(h_ref, state_ref, grads_ref, h, state, grads)
    assert_agree(h, h_ref, 5e-3, f"slstm extreme {kind} h")
    for s, s_ref in zip(state, state_ref):
        assert_agree(s, s_ref, 5e-3, f"slstm extreme {kind} state")


# ---- 3. long runs of forget gates near 0 and near 1 ----------------------------------------------------


def forget_gate_runs(generator: torch.Generator, T: int) -> torch.Tensor:
    """[T] runs of 50 to 2,000 steps, alternately near 1 (pre-activations 15 to 30) and near 0 (-30 to -15)."""
    f, t, sign = torch.empty(T), 0, 1.0
    while t < T:
        run = min(int(torch.randint(50, 2000, (1,), generator=generator)), T - t)
        f[t : t + run] = sign * (15 + 15 * torch.rand(run, generator=generator))
        t, sign = t + run, -sign
    return f


def test_mlstm_long_runs_of_forget_gates_near_0_and_1_stay_finite_and_forms_agree():
    """8,192 steps. After a run of forget gates near 1 the memory holds a thousand keys, |n^T q| gets small
    and h reaches ~2,000: there the recurrent form, which adds into C and n one step at a time, is up to 6e-3
    away from the chunkwise form (over 16,384 such steps: 4e-3 from float64, the chunkwise form 3e-4).
    Chunkwise and parallel agree to 1e-4."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 1, 2, 8192, 4
    inputs = mlstm_inputs(B, H, T, D)
    inputs["f"] = torch.stack([forget_gate_runs(g, T) for _ in range(B * H)]).view(B, H, T)
    h_rec, state_rec = mlstm_recurrent(**inputs)
    h_par, state_par = mlstm_parallel(**prefix(inputs, PREFIX))
    assert_finite(h_rec, state_rec, h_par, state_par)
    for chunk_size in (64, 1000):
        h, state = mlstm_chunkwise(**inputs, chunk_size=chunk_size)
        assert_finite(h, state)
        assert_agree(h, h_rec, 2e-2, f"runs chunkwise-{chunk_size} h")
        assert_agree(h[:, :, :PREFIX], h_par, 5e-4, f"runs chunkwise-{chunk_size} parallel h")
        for s, s_rec in zip(state, state_rec):
            assert_agree(s, s_rec, 3e-5, f"runs chunkwise-{chunk_size} state")


def test_slstm_long_runs_of_forget_gates_near_0_and_1_stay_finite_and_kernels_agree():
    g = torch.Generator().manual_seed(0)
    inputs = slstm_inputs(B=1, H=2, T=8192, D=4)
    runs = torch.stack([forget_gate_runs(g, 8192) for _ in range(2 * 4)])  # one per unit: [H * D, T]
    inputs["gates_x"][:, :, :, 1] = runs.unflatten(0, (2, 4)).transpose(1, 2)[None]  # [1, H, T, D]
    h, state = ops.slstm(**inputs)
    h_ref, state_ref = slstm_recurrent(**inputs)
    assert_finite(h, state, h_ref, state_ref)
    assert_agree(h, h_ref, 1e-5, "slstm runs h")
    for s, s_ref in zip(state, state_ref):
        assert_agree(s, s_ref, 1e-5, "slstm runs state")


# ---- 4. through a tiny model -------------------------------------------------------------------------

FAMILIES = {
    "neurips": {"block_family": "neurips", "layer_types": ["mlstm", "slstm"]},
    "large": {"block_family": "large", "layer_types": ["mlstm", "slstm"]},
}
TAIL = 1024  # tokens of the long inputs that run one per call


def tiny_model(family: str, dtype: torch.dtype = torch.float32, **overrides) -> XLSTMForCausalLM:
    """An eval-mode model of an mLSTM and an sLSTM block (hidden size 16, 2 heads), every parameter moved by
    N(0, 0.1) noise so that the gates are not at their initial values."""
    torch.manual_seed(0)
    settings = {"vocab_size": VOCAB, "hidden_size": 16, "num_heads": 2, "chunk_size": 64, **FAMILIES[family]}
    config = XLSTMConfig(num_hidden_layers=2, **{**settings, **overrides})
    model = XLSTMForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval().to(dtype)


def random_ids(length: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def state_tensors(cache) -> list[torch.Tensor]:
    return [t for t in tree_leaves(cache.layer_states) if isinstance(t, torch.Tensor)]


def one_token_per_call(model: XLSTMForCausalLM, ids: torch.Tensor, cache=None):
    """(logits [B, T, vocab], cache) feeding `ids` one token per call, continuing from `cache`."""
    logits = []
    for t in range(ids.shape[1]):
        out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
        cache = out.cache
        logits.append(out.logits)
    return torch.cat(logits, dim=1), cache


# float32: the forms' float32 differences, through two blocks (measured below 1e-5, see the calls); bf16: the
# blocks round h, the states stay float32, so a form's rounding can flip a bf16 ulp that the next
# projections carry on
MODEL_TOLERANCES = {torch.float32: 1e-4, torch.bfloat16: 5e-2}


@pytest.mark.parametrize(("family", "dtype"), [("neurips", torch.float32), ("large", torch.float32),
                                               ("neurips", torch.bfloat16)], ids=["neurips-float32", "large-float32",
                                                                                 "neurips-bfloat16"])
@torch.no_grad()
def test_model_65536_tokens_stay_finite_and_forms_agree(family, dtype):
    """One forward over 65,536 tokens (chunkwise mLSTM, fused sLSTM) against: the same tokens in pieces of odd
    lengths each continuing from the cache, the last 1,024 one token per call (the recurrent step, compiled for
    float32), and the first 2,048 with chunks as long as that (the parallel form)."""
    model = tiny_model(family, dtype)
    ids = random_ids(LONG)
    full = model(ids)

    cache, logits = None, []
    for piece in ids[:, : LONG - TAIL].split([1, 4097, 30_000, LONG - TAIL - 34_098], dim=1):
        out = model(piece, cache=cache, use_cache=True)
        cache = out.cache
        logits.append(out.logits)
    tail_logits, cache = one_token_per_call(model, ids[:, LONG - TAIL :], cache)
    parallel = tiny_model(family, dtype, chunk_size=PREFIX)
    parallel.load_state_dict(model.state_dict())
    parallel_logits = parallel(ids[:, :PREFIX]).logits

    assert full.logits.dtype == dtype
    assert_finite(full.logits, state_tensors(full.cache), tail_logits, state_tensors(cache), parallel_logits)
    tol = MODEL_TOLERANCES[dtype]
    assert_agree(torch.cat(logits, dim=1), full.logits[:, : LONG - TAIL], tol, f"model {family} {dtype} pieces")
    assert_agree(tail_logits, full.logits[:, LONG - TAIL :], tol, f"model {family} {dtype} one per call")
    assert_agree(parallel_logits, full.logits[:, :PREFIX], tol, f"model {family} {dtype} parallel")
    for s, s_full in zip(state_tensors(cache), state_tensors(full.cache), strict=True):
        assert_agree(s, s_full, tol, f"model {family} {dtype} state")


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_model_with_extreme_gate_biases_stays_finite_and_forms_agree(family):
    """mLSTM input and forget gate biases at +-1e4 (the four sign pairs over four heads) and all sLSTM gate
    biases at +-1e4 (random signs; the large family without its gate soft cap): finite logits, the same logits
    one token per call, and finite gradients of the loss for every parameter. The head with both gates at
    -1e4 gave NaN gradients before the normaliser's floor was capped."""
    model = tiny_model(family, gate_soft_cap=0.0, num_heads=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mlstm_gates = model.backbone.blocks[0].mixer.gate_proj.bias  # [i of the 4 heads, f of the 4 heads]
        mlstm_gates.copy_(torch.tensor([1e4, 1e4, -1e4, -1e4, 1e4, -1e4, 1e4, -1e4]))
        slstm_gates = model.backbone.blocks[1].mixer.bias
        slstm_gates.copy_(1e4 * (torch.randint(0, 2, slstm_gates.shape, generator=g) * 2.0 - 1.0))
    ids = random_ids(150, batch=2)
    with torch.no_grad():
        logits = model(ids).logits
        stepped, _ = one_token_per_call(model, ids)
    assert_agree(stepped, logits, 1e-3, f"extreme biases {family} one per call")  # measured 9e-5

    model.train()
    model(ids, labels=ids).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


# ---- 5. long generation ------------------------------------------------------------------------------


@torch.no_grad()
def test_generating_100k_tokens_keeps_the_state_finite_and_its_size_constant():
    """100,000 sampled tokens, one per call of the model's forward with its cache (what generate() does, through
    the compiled one-token step; generate() itself took 127 s for as many on 2 busy cores: the slow test
    below). The cache's bytes and shapes stay those after the first token and its tensors stay finite; one
    chunkwise forward over the generated sequence then gives the logits of every step."""
    model = tiny_model("neurips")
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(1, GENERATED + 1, dtype=torch.long)
    logits = torch.empty(GENERATED, VOCAB)
    out = model(ids[:, :1], use_cache=True)
    size, shapes = out.cache.nbytes(), [t.shape for t in state_tensors(out.cache)]
    for t in range(GENERATED):
        logits[t] = out.logits[0, -1]
        ids[0, t + 1] = torch.multinomial(out.logits[0, -1].softmax(-1), 1, generator=g)
        if t % 10_000 == 0 or t == GENERATED - 1:
            assert out.cache.nbytes() == size and out.cache.get_seq_length() == t + 1
            assert [s.shape for s in state_tensors(out.cache)] == shapes
            assert_finite(state_tensors(out.cache), what=f"state after {t + 1} tokens")
        if t < GENERATED - 1:
            out = model(ids[:, t + 1 : t + 2], cache=out.cache)
    assert_finite(logits)
    assert_agree(logits, model(ids[:, :GENERATED]).logits[0], 1e-4, "generation chunkwise-steps")


@pytest.mark.slow
@torch.no_grad()
def test_generate_100k_tokens_keeps_the_state_finite_and_its_size_constant():
    """The same through generate() (sampling), recording the cache after every forward."""
    model = tiny_model("neurips")
    sizes, forward = [], model.forward

    @wraps(forward)
    def recording_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        sizes.append(out.cache.nbytes())
        if len(sizes) % 10_000 == 0:
            assert_finite(state_tensors(out.cache), what=f"state after {len(sizes)} calls")
        return out

    model.forward = recording_forward
    torch.manual_seed(0)
    sequences = model.generate(random_ids(8), max_new_tokens=GENERATED, min_new_tokens=GENERATED, do_sample=True,
                               pad_token_id=0)
    assert sequences.shape == (1, 8 + GENERATED)
    assert len(sizes) == GENERATED and set(sizes) == {sizes[0]}
