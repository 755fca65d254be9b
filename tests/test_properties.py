"""Properties over random shapes, chunk sizes, padding and block patterns (hypothesis, derandomised: every run
sees the same examples):

* the three mLSTM forms (chunkwise with any chunk size, parallel, recurrent) agree on outputs and final
  states in float32 and on gradients in float64, from any initial state and under any padding; the sLSTM
  kernel agrees with the reference loop;
* a padded step is an identity step: a row padded on the left, or anywhere, gives at its real steps what it
  gives alone, in the ops and through a model of any block pattern of either family;
* an input fed in pieces, each continuing from the state (the cache) the last one left, gives what it gives
  whole;
* save_pretrained / from_pretrained is exact.

Hypothesis draws the shapes, settings and a seed; the tensors come from the seed (it shrinks shapes and
seeds, not values). The tests of fixed cases are in test_ops.py, test_compiled_ops.py and test_modeling.py.
"""

import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._pytree import tree_leaves

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM, ops
from xlstm_hf.ops.gates import normaliser_floor
from xlstm_hf.ops.mlstm import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent, mlstm_step, zero_mlstm_state
from xlstm_hf.ops.slstm import slstm_recurrent

pytestmark = pytest.mark.usefixtures("single_thread")


def examples(count: int):
    """Deterministic and quick: the same `count` examples every run, no deadline, no example database."""
    return settings(max_examples=count, deadline=None, derandomize=True, database=None)


def close(actual, expected, tol: float, what: str, scale=None):
    """|actual - expected| <= tol * (1 + |expected|), or <= tol * scale with a scale (a number or a tensor of
    the shape of `expected`)."""
    actual, expected = actual.double(), expected.double()
    bound = 1 + expected.abs() if scale is None else torch.as_tensor(scale, dtype=torch.float64).expand_as(expected)
    error = ((actual - expected).abs() / bound).max().item() if expected.numel() else 0.0
    assert error <= tol, f"{what}: error {error:.3g} > {tol}"


def gaussian(g: torch.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).mul(scale).add(shift).float()


# ---- strategies --------------------------------------------------------------------------------------

seeds = st.integers(0, 2**16)
lengths = st.integers(1, 40)  # chunk sizes below draw from 1 to 16: lengths that are and are not multiples
chunk_sizes = st.integers(1, 16)
MASK_KINDS = ("none", "left", "random")


def padding_mask(kind: str, B: int, T: int, g: torch.Generator) -> torch.Tensor | None:
    """[B, T] bool, False at padded steps: left padding of random length, or each step padded with probability
    0.4. Rows may be entirely padded."""
    if kind == "none":
        return None
    if kind == "left":
        starts = torch.randint(0, T + 1, (B,), generator=g)
        return torch.arange(T) >= starts[:, None]
    return torch.rand(B, T, generator=g) > 0.4


@st.composite
def mlstm_cases(draw):
    """(inputs, initial state or None, mask or None) of a random mLSTM problem: q, k, v ~ N(0, 1), input gates
    ~ N(0, s), forget gates ~ N(mu, 2), with s and mu drawn (forget gates mostly closed to mostly open)."""
    B, H, T = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(lengths)
    Dqk, Dv = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    input_scale = draw(st.sampled_from([0.5, 2.0, 8.0]))
    forget_shift = draw(st.sampled_from([-2.0, 3.0, 8.0]))
    with_state, kind = draw(st.booleans()), draw(st.sampled_from(MASK_KINDS))
    g = torch.Generator().manual_seed(draw(seeds))
    inputs = {
        "q": gaussian(g, B, H, T, Dqk), "k": gaussian(g, B, H, T, Dqk), "v": gaussian(g, B, H, T, Dv),
        "i": gaussian(g, B, H, T, scale=input_scale), "f": gaussian(g, B, H, T, scale=2.0, shift=forget_shift),
    }
    state = (gaussian(g, B, H, Dqk, Dv), gaussian(g, B, H, Dqk), gaussian(g, B, H)) if with_state else None
    return inputs, state, padding_mask(kind, B, T, g)


@st.composite
def slstm_cases(draw):
    """(inputs, initial state or None, mask or None) of a random sLSTM problem."""
    B, H, T, D = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(lengths), draw(st.integers(1, 6))
    with_state, kind = draw(st.booleans()), draw(st.sampled_from(MASK_KINDS))
    g = torch.Generator().manual_seed(draw(seeds))
    gates_x = gaussian(g, B, H, T, 4, D, scale=2.0)
    gates_x[:, :, :, 1] += draw(st.sampled_from([-2.0, 3.0]))
    inputs = {"gates_x": gates_x, "recurrent_kernel": gaussian(g, H, D, 4, D, scale=0.5),
              "bias": gaussian(g, H, 4, D, scale=0.5)}
    state = None
    if with_state:  # n >= 1: a non-empty memory
        state = (torch.rand(B, H, D, generator=g) * 2 - 1, gaussian(g, B, H, D), 1 + torch.rand(B, H, D, generator=g),
                 gaussian(g, B, H, D))
    return inputs, state, padding_mask(kind, B, T, g)


def outputs_and_gradients(fn, inputs: dict, state, mask, **kwargs):
    """(h, final state, gradients of the inputs and of the initial state) under a fixed random linear loss."""
    leaves = {name: x.clone().requires_grad_() for name, x in inputs.items()}
    state_leaves = [s.clone().requires_grad_() for s in state] if state is not None else []
    h, final = fn(**leaves, mask=mask, initial_state=tuple(state_leaves) or None, **kwargs)
    g = torch.Generator().manual_seed(1)
    loss = sum((out * gaussian(g, *out.shape)).sum() for out in (h, *final))
    return h.detach(), [s.detach() for s in final], torch.autograd.grad(loss, [*leaves.values(), *state_leaves])


def rows_alone(fn, inputs: dict, state, mask: torch.Tensor, b: int, **kwargs):
    """Row b of a batch with its padded steps left out, from its own initial state."""
    real = mask[b]
    if "gates_x" in inputs:
        row = {"gates_x": inputs["gates_x"][b : b + 1, :, real], "recurrent_kernel": inputs["recurrent_kernel"],
               "bias": inputs["bias"]}
    else:
        row = {name: x[b : b + 1, :, real] for name, x in inputs.items()}
    row_state = tuple(s[b : b + 1] for s in state) if state is not None else None
    return fn(**row, initial_state=row_state, **kwargs)


# ---- 1. the ops --------------------------------------------------------------------------------------


def read_scale(inputs: dict, state, mask) -> torch.Tensor:
    """[B, H, T, Dv], in float64: the size of the sums the read h = C^T q / max(|n^T q|, exp(-m)) takes, over
    its normaliser: (|q|^T |C| + |h| |q|^T |n|) / max(|n^T q|, exp(-m)), with |C|, |n| the memory written with
    |k| and |v|. Rounding moves h by a small multiple of float32's epsilon times this: that is |h| where
    nothing cancels, and much more where |n^T q| is small (h reaches hundreds there)."""
    x = {name: t.double() for name, t in inputs.items()}
    scale_q = x["q"].shape[-1] ** -0.5
    signed = tuple(s.double() for s in state) if state is not None else zero_mlstm_state(x["q"], x["v"])
    absolute = (signed[0].abs(), signed[1].abs(), signed[2])
    scales = []
    for t in range(x["q"].shape[2]):
        q, k, v, i, f = (x[name][:, :, t] for name in ("q", "k", "v", "i", "f"))
        step_mask = None if mask is None else mask[:, t]
        h, signed = mlstm_step(q, k, v, i, f, signed, mask=step_mask)
        _, absolute = mlstm_step(q, k.abs(), v.abs(), i, f, absolute, mask=step_mask)
        C, n, m = signed
        normaliser = torch.maximum((q * scale_q * n).sum(-1).abs(), normaliser_floor(m))[..., None]
        q_abs = q.abs()[..., None, :] * scale_q
        sums = (q_abs @ absolute[0]).squeeze(-2) + h.abs() * (q_abs @ absolute[1][..., None]).squeeze(-1)
        scales.append(sums / normaliser)
    return torch.stack(scales, dim=2)


def close_h(actual, expected, scale, tol: float, what: str):
    """|actual - expected| <= tol * (read scale + 1e-3): relative to what rounding can do to h."""
    close(actual, expected, tol, what, scale=scale + 1e-3)


# The forms differ by float32 rounding: h relative to its read scale, the states relative to 1 + |state|. Largest
# errors measured over 6,000 random examples: h 2e-6, states 4e-6. Gradients are compared in float64 (to 1e-9
# of their largest entry, measured 2.4e-11): in float32 the kinks of max(|n^T q|, exp(-m)) and |n^T q| make
# them jump where rounding puts two forms on either side (6e-3 of the largest entry, once in 6,000 examples).
H_TOL, STATE_TOL, GRAD_TOL = 1e-5, 1e-5, 1e-9


@examples(250)
@given(case=mlstm_cases(), chunk_size=chunk_sizes)
def test_mlstm_chunkwise_parallel_and_recurrent_agree(case, chunk_size):
    inputs, state, mask = case
    scale = read_scale(inputs, state, mask)
    inputs64 = {name: x.double() for name, x in inputs.items()}
    state64 = tuple(s.double() for s in state) if state is not None else None
    h_ref, state_ref = mlstm_recurrent(**inputs, mask=mask, initial_state=state)
    _, _, grads_ref = outputs_and_gradients(mlstm_recurrent, inputs64, state64, mask)
    for name, fn, kwargs in [("chunkwise", mlstm_chunkwise, {"chunk_size": chunk_size}),
                             ("parallel", mlstm_parallel, {})]:
        h, final = fn(**inputs, mask=mask, initial_state=state, **kwargs)
        close_h(h, h_ref, scale, H_TOL, f"mlstm {name} h")
        for s, s_ref in zip(final, state_ref):
            close(s, s_ref, STATE_TOL, f"mlstm {name} state")
        _, _, grads = outputs_and_gradients(fn, inputs64, state64, mask, **kwargs)
        for grad, grad_ref in zip(grads, grads_ref):
            close(grad, grad_ref, GRAD_TOL, f"mlstm {name} grad (float64)", scale=max(1.0, grad_ref.abs().max().item()))


@examples(150)
@given(case=mlstm_cases(), chunk_size=chunk_sizes, form=st.sampled_from(["chunkwise", "parallel", "recurrent"]))
def test_mlstm_padded_steps_change_nothing(case, chunk_size, form):
    """Each row of a padded batch equals the row with its padded steps left out; outputs at padded steps are 0."""
    inputs, state, mask = case
    if mask is None:
        mask = torch.ones(inputs["q"].shape[0], inputs["q"].shape[2], dtype=torch.bool)
    kwargs = {"chunk_size": chunk_size} if form == "chunkwise" else {}
    fn = {"chunkwise": mlstm_chunkwise, "parallel": mlstm_parallel, "recurrent": mlstm_recurrent}[form]
    h, final = fn(**inputs, mask=mask, initial_state=state, **kwargs)
    scale = read_scale(inputs, state, mask)
    for b in range(mask.shape[0]):
        real = mask[b]
        assert torch.equal(h[b, :, ~real], torch.zeros_like(h[b, :, ~real]))
        if not real.any():  # nothing real: the state passes through
            if state is not None:
                assert all(torch.equal(s[b], s0[b]) for s, s0 in zip(final, state))
            continue
        h_alone, final_alone = rows_alone(fn, inputs, state, mask, b, **kwargs)
        close_h(h[b : b + 1, :, real], h_alone, scale[b : b + 1, :, real], H_TOL, f"mlstm padding {form} h")
        for s, s_alone in zip(final, final_alone):
            close(s[b : b + 1], s_alone, STATE_TOL, f"mlstm padding {form} state")


@examples(150)
@given(case=mlstm_cases(), chunk_size=chunk_sizes, data=st.data())
def test_mlstm_in_pieces_equals_whole(case, chunk_size, data):
    """Any split of the steps into two pieces, the second continuing from the state the first left."""
    inputs, state, mask = case
    T = inputs["q"].shape[2]
    split = data.draw(st.integers(0, T), label="split")
    pieces = [({name: x[:, :, span] for name, x in inputs.items()}, None if mask is None else mask[:, span])
              for span in (slice(0, split), slice(split, T))]
    h, final = mlstm_chunkwise(**inputs, mask=mask, initial_state=state, chunk_size=chunk_size)
    outputs, carried = [], state
    for piece, piece_mask in pieces:
        if piece["q"].shape[2] == 0:
            continue
        h_piece, carried = ops.mlstm(**piece, mask=piece_mask, initial_state=carried, chunk_size=chunk_size)
        outputs.append(h_piece)
    close_h(torch.cat(outputs, dim=2), h, read_scale(inputs, state, mask), H_TOL, "mlstm pieces h")
    for s, s_whole in zip(carried, final):
        close(s, s_whole, STATE_TOL, "mlstm pieces state")


@examples(150)
@given(case=slstm_cases())
def test_slstm_kernel_agrees_with_the_reference(case):
    """The kernel ops.slstm picks (the fused one where built) against the reference loop, gradients included."""
    inputs, state, mask = case
    h, final, grads = outputs_and_gradients(ops.slstm, inputs, state, mask)
    h_ref, final_ref, grads_ref = outputs_and_gradients(slstm_recurrent, inputs, state, mask)
    close(h, h_ref, 1e-5, "slstm h")
    for s, s_ref in zip(final, final_ref):
        close(s, s_ref, 1e-5, "slstm state")
    for grad, grad_ref in zip(grads, grads_ref):
        close(grad, grad_ref, 1e-5, "slstm grad", scale=max(1.0, grad_ref.abs().max().item()))


@examples(150)
@given(case=slstm_cases(), data=st.data())
def test_slstm_padded_steps_change_nothing_and_pieces_equal_whole(case, data):
    inputs, state, mask = case
    B, _, T = inputs["gates_x"].shape[:3]
    mask = mask if mask is not None else torch.ones(B, T, dtype=torch.bool)
    h, final = ops.slstm(**inputs, mask=mask, initial_state=state)
    for b in range(B):
        real = mask[b]
        assert torch.equal(h[b, :, ~real], torch.zeros_like(h[b, :, ~real]))
        if real.any():
            h_alone, final_alone = rows_alone(ops.slstm, inputs, state, mask, b)
            close(h[b : b + 1, :, real], h_alone, 1e-5, "slstm padding h")
            for s, s_alone in zip(final, final_alone):
                close(s[b : b + 1], s_alone, 1e-5, "slstm padding state")
    split = data.draw(st.integers(1, T), label="split")
    weights = {"recurrent_kernel": inputs["recurrent_kernel"], "bias": inputs["bias"]}
    h1, carried = ops.slstm(inputs["gates_x"][:, :, :split], **weights, mask=mask[:, :split], initial_state=state)
    outputs = [h1]
    if split < T:
        h2, carried = ops.slstm(inputs["gates_x"][:, :, split:], **weights, mask=mask[:, split:], initial_state=carried)
        outputs.append(h2)
    close(torch.cat(outputs, dim=2), h, 1e-5, "slstm pieces h")
    for s, s_whole in zip(carried, final):
        close(s, s_whole, 1e-5, "slstm pieces state")


# ---- 2. models ---------------------------------------------------------------------------------------

VOCAB = 24
MODEL_TOL = 2e-5  # logits and cache, relative to 1 + |value|: measured up to 5.6e-6 over 2,000 random examples


@st.composite
def models(draw) -> XLSTMForCausalLM:
    """An eval-mode model of 1 to 3 blocks in any pattern of mLSTM and sLSTM, of either family, widths 8 to 32,
    1 or 2 heads, chunks of 1 to 8 steps, causal convolutions of width 0 to 4, on the compiled or the PyTorch
    kernels; every parameter moved by N(0, 0.1) noise so that the gates are not at their initial values."""
    layer_types = draw(st.lists(st.sampled_from(["mlstm", "slstm"]), min_size=1, max_size=3), label="layer_types")
    settings_ = {
        "block_family": draw(st.sampled_from(["neurips", "large"]), label="block_family"),
        "hidden_size": draw(st.sampled_from([8, 16, 32]), label="hidden_size"),
        "num_heads": draw(st.sampled_from([1, 2]), label="num_heads"),
        "chunk_size": draw(st.integers(1, 8), label="chunk_size"),
        "conv_kernel_size": draw(st.sampled_from([0, 1, 2, 4]), label="conv_kernel_size"),
        "slstm_conv_kernel_size": draw(st.sampled_from([0, 2, 4]), label="slstm_conv_kernel_size"),
        "backend": draw(st.sampled_from(["auto", "native"]), label="backend"),
        "tie_word_embeddings": draw(st.booleans(), label="tie_word_embeddings"),
    }
    config = XLSTMConfig(vocab_size=VOCAB, num_hidden_layers=len(layer_types), layer_types=layer_types, pad_token_id=0,
                         **settings_)
    with torch.random.fork_rng():
        torch.manual_seed(draw(seeds, label="seed"))
        model = XLSTMForCausalLM(config)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@st.composite
def padded_batches(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, T], attention_mask [B, T]): rows of 1 to 12 real tokens, left-padded to the longest, or
    with padding anywhere (pads among and around the real tokens)."""
    g = torch.Generator().manual_seed(draw(seeds, label="seed"))
    real_lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3), label="real_lengths")
    side = draw(st.sampled_from(["left", "anywhere"]), label="padding")
    T = max(real_lengths) + (draw(st.integers(0, 6), label="extra_pads") if side == "anywhere" else 0)
    mask = torch.zeros(len(real_lengths), T, dtype=torch.long)
    for row, length in enumerate(real_lengths):
        positions = torch.arange(T - length, T) if side == "left" else torch.randperm(T, generator=g)[:length]
        mask[row, positions] = 1
    ids = torch.randint(1, VOCAB, (len(real_lengths), T), generator=g).masked_fill(mask == 0, 0)
    return ids, mask


def state_tensors(cache) -> list[torch.Tensor]:
    return [t for t in tree_leaves(cache.layer_states) if isinstance(t, torch.Tensor)]


@examples(150)
@given(model=models(), batch=padded_batches())
@torch.no_grad()
def test_padding_gives_each_row_the_logits_it_gets_alone(model, batch):
    """And the cache of a padded row is the one of the row alone."""
    ids, mask = batch
    out = model(ids, attention_mask=mask, use_cache=True)
    for row in range(ids.shape[0]):
        real = mask[row].bool()
        alone = model(ids[row : row + 1, real], use_cache=True)
        close(out.logits[row, real], alone.logits[0], MODEL_TOL, "model padding logits")
        for s, s_alone in zip(state_tensors(out.cache), state_tensors(alone.cache), strict=True):
            close(s[row : row + 1], s_alone, MODEL_TOL, "model padding cache")


@examples(150)
@given(model=models(), batch=padded_batches(), data=st.data())
@torch.no_grad()
def test_input_in_pieces_with_a_cache_equals_input_whole(model, batch, data):
    """Random cut points (pieces of one token take the one-token step), the attention mask growing with the
    tokens seen as in generation."""
    ids, mask = batch
    T = ids.shape[1]
    cuts = sorted(data.draw(st.lists(st.integers(1, T - 1), max_size=3, unique=True), label="cuts")) if T > 1 else []
    whole = model(ids, attention_mask=mask, use_cache=True)
    cache, logits = None, []
    for start, end in zip([0, *cuts], [*cuts, T]):
        out = model(ids[:, start:end], attention_mask=mask[:, :end], cache=cache, use_cache=True)
        cache = out.cache
        logits.append(out.logits)
    real = mask.bool()
    close(torch.cat(logits, dim=1)[real], whole.logits[real], MODEL_TOL, "model pieces logits")
    for s, s_whole in zip(state_tensors(cache), state_tensors(whole.cache), strict=True):
        close(s, s_whole, MODEL_TOL, "model pieces cache")


@examples(10)
@given(model=models(), batch=padded_batches())
@torch.no_grad()
def test_save_and_load_is_exact(model, batch):
    ids, mask = batch
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = XLSTMForCausalLM.from_pretrained(folder).eval()
    settings_ = {name: value for name, value in model.config.to_dict().items() if name != "_name_or_path"}
    assert {name: loaded.config.to_dict()[name] for name in settings_} == settings_
    assert torch.equal(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    assert torch.equal(loaded(ids).logits, model(ids).logits)
