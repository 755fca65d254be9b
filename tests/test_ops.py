"""The xLSTM recurrences in `xlstm_hf.ops`: the three mLSTM forms against each other, padding, state
chaining, gradients, NaN-safety, dtypes, and the official implementations (`xlstm`, `mlstm_kernels`)
as independent oracles."""

import math
from functools import partial

import pytest
import torch
from torch.autograd import gradcheck
from torch.testing import assert_close

from xlstm_hf import ops
from xlstm_hf.ops.mlstm import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent, mlstm_step
from xlstm_hf.ops.mlstm.chunkwise_backward import mlstm_chunkwise_backward
from xlstm_hf.ops.slstm import slstm_recurrent, slstm_step

MLSTM_FORMS = {
    "recurrent": mlstm_recurrent,
    "parallel": mlstm_parallel,
    "chunkwise-1": partial(mlstm_chunkwise, chunk_size=1),
    "chunkwise-2": partial(mlstm_chunkwise, chunk_size=2),
    "chunkwise-4": partial(mlstm_chunkwise, chunk_size=4),
    "chunkwise-16": partial(mlstm_chunkwise, chunk_size=16),
    "chunkwise-64": partial(mlstm_chunkwise, chunk_size=64),
}
# the forms that the padding, chaining and dtype tests run (chunks of 4: several chunks and a remainder)
SEQUENCE_FORMS = ["recurrent", "parallel", "chunkwise-4"]


pytestmark = pytest.mark.usefixtures("single_thread")


# ---- random inputs -----------------------------------------------------------------------------------
# Everything is drawn in float64 and then cast, so that one seed gives the same values in every dtype.


def _randn(generator, *shape, dtype, scale=1.0, shift=0.0):
    return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + shift).to(dtype)


def mlstm_inputs(B=2, H=3, T=13, Dqk=5, Dv=7, *, seed=0, dtype=torch.float32):
    """q, k, v ~ N(0, 1); gate pre-activations ~ N(0, 2), the forget gate with bias +3."""
    g = torch.Generator().manual_seed(seed)
    return {
        "q": _randn(g, B, H, T, Dqk, dtype=dtype),
        "k": _randn(g, B, H, T, Dqk, dtype=dtype),
        "v": _randn(g, B, H, T, Dv, dtype=dtype),
        "i": _randn(g, B, H, T, dtype=dtype, scale=2.0),
        "f": _randn(g, B, H, T, dtype=dtype, scale=2.0, shift=3.0),
    }


def mlstm_state(B=2, H=3, Dqk=5, Dv=7, *, seed=100, dtype=torch.float32):
    """A non-empty memory (C, n, m)."""
    g = torch.Generator().manual_seed(seed)
    return _randn(g, B, H, Dqk, Dv, dtype=dtype), _randn(g, B, H, Dqk, dtype=dtype), _randn(g, B, H, dtype=dtype)


def slstm_inputs(B=2, H=2, T=13, D=4, *, seed=0, dtype=torch.float32):
    """gates_x [B, H, T, 4, D] ~ N(0, 1) with forget bias +3, recurrent kernel [H, D, 4, D] ~ N(0, 0.5),
    bias [H, 4, D] ~ N(0, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    gates_x = _randn(g, B, H, T, 4, D, dtype=dtype)
    gates_x[:, :, :, 1] += 3.0
    return {
        "gates_x": gates_x,
        "recurrent_kernel": _randn(g, H, D, 4, D, dtype=dtype, scale=0.5),
        "bias": _randn(g, H, 4, D, dtype=dtype, scale=0.5),
    }


def slstm_state(B=2, H=2, D=4, *, seed=100, dtype=torch.float32):
    """A non-empty state (h, c, n, m) with n in [1, 2] (n = 0 would mean "empty" and restart m)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(B, H, D, generator=g, dtype=torch.float64) * 2 - 1
    c = _randn(g, B, H, D, dtype=torch.float64)
    n = 1 + torch.rand(B, H, D, generator=g, dtype=torch.float64)
    m = _randn(g, B, H, D, dtype=torch.float64)
    return tuple(x.to(dtype) for x in (h, c, n, m))


def padding_mask(kind, B=3, T=16, seed=0):
    """[B, T] bool, False at padded steps; every row keeps at least one real step."""
    if kind == "left":
        return torch.arange(T) >= torch.tensor([0, 3, T - 1])[:, None]
    if kind == "right":
        return torch.arange(T) < torch.tensor([T, 11, 1])[:, None]
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(seed)) < 0.6
    mask[:, 5] = True
    return mask


def random_linear_loss(outputs, seed=1234):
    """A fixed random linear function of all the tensors in `outputs`."""
    g = torch.Generator().manual_seed(seed)
    return sum((out * _randn(g, *out.shape, dtype=out.dtype)).sum() for out in outputs)


def mlstm_outputs_and_grads(fn, inputs, initial_state):
    """(h, C, n, m) of `fn`, and the gradients of a random linear function of them w.r.t.
    (q, k, v, i, f, C0, n0, m0)."""
    leaves = [x.detach().clone().requires_grad_() for x in (*inputs.values(), *initial_state)]
    q, k, v, i, f, *state = leaves
    h, final_state = fn(q, k, v, i, f, initial_state=tuple(state))
    outputs = (h, *final_state)
    grads = torch.autograd.grad(random_linear_loss(outputs), leaves)
    return [out.detach() for out in outputs], grads


def select_row(inputs, b, steps):
    """Row b of a batch of sequence inputs ([B, H, T, ...]), only at `steps`."""
    return {name: x[b : b + 1, :, steps] for name, x in inputs.items()}


def select_state(state, b):
    return tuple(s[b : b + 1] for s in state)


# ---- 1. the three mLSTM forms agree ------------------------------------------------------------------

AGREEMENT_CASES = [
    (1, "parallel"),
    (1, "chunkwise-4"),
    (7, "parallel"),
    (7, "chunkwise-16"),  # shorter than a chunk
    (13, "parallel"),
    (13, "chunkwise-1"),
    (13, "chunkwise-4"),  # several chunks plus a remainder
    (16, "chunkwise-16"),  # exactly one chunk
    (37, "parallel"),
    (37, "chunkwise-4"),
    (37, "chunkwise-16"),
    (64, "chunkwise-16"),  # several whole chunks
    (64, "chunkwise-64"),
    (150, "parallel"),
    (150, "chunkwise-64"),  # two chunks plus a remainder
]


# Tolerances for two forms of the same computation, measured on these inputs. float64: the forms agree
# to 1e-12. float32: the final states agree to 1e-5, but at T >= 64 the float32 *recurrent* form itself
# is up to 1.6e-5 (relative and absolute) away from the float64 truth in its outputs, where |n^T q| is
# small and h grows to ~40, and its gradients (up to ~3e3 there) up to 3e-5 of their largest entry.
# So outputs get 5e-5 and gradients 1e-4 of their scale: rounding passes, a bug does not.
FORM_TOLERANCES = {
    torch.float32: {"h_tol": 5e-5, "state_tol": 1e-5, "grad_tol": 1e-4},
    torch.float64: {"h_tol": 1e-10, "state_tol": 1e-10, "grad_tol": 1e-10},
}


def assert_outputs_and_grads_close(actual, expected, *, h_tol, state_tol, grad_tol):
    """`actual`, `expected` as returned by `mlstm_outputs_and_grads`; gradients are compared with an
    absolute tolerance relative to their largest entry."""
    (h, *state), grads = actual
    (h_ref, *state_ref), grads_ref = expected
    assert_close(h, h_ref, rtol=h_tol, atol=h_tol)
    for s, s_ref in zip(state, state_ref):
        assert_close(s, s_ref, rtol=state_tol, atol=state_tol)
    for name, grad, grad_ref in zip(["q", "k", "v", "i", "f", "C0", "n0", "m0"], grads, grads_ref):
        scale = grad_ref.abs().max().item()
        assert_close(grad, grad_ref, rtol=grad_tol, atol=grad_tol * scale, msg=lambda m: f"d/d{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("T", "form"), AGREEMENT_CASES)
def test_mlstm_forms_agree_on_outputs_states_and_gradients(T, form, dtype):
    inputs = mlstm_inputs(T=T, dtype=dtype)
    initial_state = mlstm_state(dtype=dtype)
    actual = mlstm_outputs_and_grads(MLSTM_FORMS[form], inputs, initial_state)
    expected = mlstm_outputs_and_grads(mlstm_recurrent, inputs, initial_state)
    assert_outputs_and_grads_close(actual, expected, **FORM_TOLERANCES[dtype])


@pytest.mark.parametrize(("form", "expected_form"), [("chunkwise", "chunkwise-4"), ("parallel", "parallel"),
                                                      ("recurrent", "recurrent")])
def test_mlstm_dispatch_runs_the_named_form(form, expected_form):
    inputs = mlstm_inputs(T=13)
    h, state = ops.mlstm(**inputs, form=form, chunk_size=4, backend="native")
    h_ref, state_ref = MLSTM_FORMS[expected_form](**inputs)
    assert torch.equal(h, h_ref)
    assert all(torch.equal(s, s_ref) for s, s_ref in zip(state, state_ref))


def test_mlstm_dispatch_single_step_runs_recurrent():
    inputs = mlstm_inputs(T=1)
    h, _ = ops.mlstm(**inputs, form="chunkwise", backend="native")
    assert torch.equal(h, mlstm_recurrent(**inputs)[0])


# ---- 2. padding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["left", "right", "random"])
@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_padding_equals_the_unpadded_sequence(form, kind):
    fn = MLSTM_FORMS[form]
    inputs, initial_state, mask = mlstm_inputs(B=3, T=16), mlstm_state(B=3), padding_mask(kind)
    h, state = fn(**inputs, mask=mask, initial_state=initial_state)
    for b in range(3):
        real = mask[b]
        h_alone, state_alone = fn(**select_row(inputs, b, real), initial_state=select_state(initial_state, b))
        assert_close(h[b : b + 1, :, real], h_alone, rtol=1e-5, atol=1e-5)
        for s, s_alone in zip(select_state(state, b), state_alone):
            assert_close(s, s_alone, rtol=1e-5, atol=1e-5)
        assert torch.equal(h[b, :, ~real], torch.zeros_like(h[b, :, ~real]))


@pytest.mark.parametrize("kind", ["left", "right", "random"])
@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_padded_steps_get_zero_gradient(form, kind):
    inputs, mask = mlstm_inputs(B=3, T=16), padding_mask(kind)
    leaves = {name: x.requires_grad_() for name, x in inputs.items()}
    h, state = MLSTM_FORMS[form](**leaves, mask=mask, initial_state=mlstm_state(B=3))
    grads = torch.autograd.grad(random_linear_loss((h, *state)), list(leaves.values()))
    for name, grad in zip(leaves, grads):
        assert torch.isfinite(grad).all(), name
        padded = grad.transpose(1, 2)[~mask]  # [padded steps, H, ...]
        assert torch.equal(padded, torch.zeros_like(padded)), name


@pytest.mark.parametrize("form", [*SEQUENCE_FORMS, "chunkwise-16"])
def test_mlstm_long_leading_padding_stays_finite(form):
    """97 of 100 steps padded: whole chunks of identity steps, outputs and gradients finite."""
    inputs = mlstm_inputs(B=2, T=100)
    mask = torch.arange(100) >= torch.tensor([97, 0])[:, None]
    leaves = {name: x.requires_grad_() for name, x in inputs.items()}
    h, state = MLSTM_FORMS[form](**leaves, mask=mask)
    grads = torch.autograd.grad(random_linear_loss((h, *state)), list(leaves.values()))
    for tensor in (h, *state, *grads):
        assert torch.isfinite(tensor).all()
    h_alone, _ = MLSTM_FORMS[form](**select_row(inputs, 0, mask[0]))
    assert_close(h[:1, :, 97:], h_alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_fully_padded_row_keeps_its_initial_state(form):
    mask = torch.tensor([[False] * 9, [True] * 9])
    initial_state = mlstm_state()
    h, state = MLSTM_FORMS[form](**mlstm_inputs(T=9), mask=mask, initial_state=initial_state)
    assert torch.equal(h[0], torch.zeros_like(h[0]))
    for s, s0 in zip(state, initial_state):
        assert torch.equal(s[0], s0[0])


def test_mlstm_step_padding_passes_the_state_through():
    inputs = {name: x[:, :, 0] for name, x in mlstm_inputs(T=1).items()}
    state = mlstm_state()
    h, new_state = mlstm_step(**inputs, state=state, mask=torch.tensor([True, False]))
    assert torch.equal(h[1], torch.zeros_like(h[1]))
    assert (h[0] != 0).all()
    for s, s_new in zip(state, new_state):
        assert torch.equal(s_new[1], s[1])
        assert not torch.equal(s_new[0], s[0])


# ---- 3. state chaining -------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 6, 16])
@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_two_pieces_equal_one_run(form, split):
    fn = MLSTM_FORMS[form]
    inputs, initial_state = mlstm_inputs(T=37), mlstm_state()
    first = {name: x[:, :, :split] for name, x in inputs.items()}
    second = {name: x[:, :, split:] for name, x in inputs.items()}
    h1, state1 = fn(**first, initial_state=initial_state)
    h2, state2 = fn(**second, initial_state=state1)
    h, state = fn(**inputs, initial_state=initial_state)
    assert_close(torch.cat([h1, h2], dim=2), h, rtol=1e-5, atol=1e-5)
    for s_chained, s in zip(state2, state):
        assert_close(s_chained, s, rtol=1e-5, atol=1e-5)


# ---- 4. gradcheck in float64 -------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("form", ["chunkwise-2", "parallel", "recurrent"])
def test_mlstm_gradcheck(form, masked):
    """All inputs including the initial state; T = 5 runs as chunks of 2 plus a remainder."""
    fn = MLSTM_FORMS[form]
    inputs = mlstm_inputs(B=2, H=2, T=5, Dqk=3, Dv=2, dtype=torch.float64)
    state = mlstm_state(B=2, H=2, Dqk=3, Dv=2, dtype=torch.float64)
    mask = torch.tensor([[False, False, True, True, True], [True, False, True, True, False]]) if masked else None
    leaves = tuple(x.requires_grad_() for x in (*inputs.values(), *state))

    def run(q, k, v, i, f, C0, n0, m0):
        h, final_state = fn(q, k, v, i, f, mask=mask, initial_state=(C0, n0, m0))
        return (h, *final_state)

    assert gradcheck(run, leaves)


@pytest.mark.parametrize(("T", "chunk_size"), [(1, 4), (7, 3), (20, 8), (13, 13), (65, 16)])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("final_grads", [False, True], ids=["outputs", "outputs_and_state"])
def test_mlstm_chunkwise_backward_written_out_equals_autograd(T, chunk_size, masked, with_state, final_grads):
    g = torch.Generator().manual_seed(T)
    B, H, Dqk, Dv = 2, 2, 5, 6
    q, k = (torch.randn(B, H, T, Dqk, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, H, T, Dv, generator=g, dtype=torch.float64)
    i = torch.randn(B, H, T, generator=g, dtype=torch.float64) * 2
    f = torch.randn(B, H, T, generator=g, dtype=torch.float64) * 2 + 3
    state = tuple(torch.randn(*shape, generator=g, dtype=torch.float64) for shape in
                  ((B, H, Dqk, Dv), (B, H, Dqk), (B, H))) if with_state else None
    mask = None
    if masked:
        mask = torch.rand(B, T, generator=g) > 0.3
        mask[0, : T // 2] = False
    leaves = [x.clone().requires_grad_() for x in (q, k, v, i, f)]
    state_leaves = [s.clone().requires_grad_() for s in state] if with_state else None
    h, final = mlstm_chunkwise(*leaves, mask=mask, initial_state=state_leaves, chunk_size=chunk_size)
    grad_h = torch.randn(h.shape, generator=g, dtype=torch.float64)
    grad_final = tuple(torch.randn(s.shape, generator=g, dtype=torch.float64) for s in final) if final_grads else None
    loss = (h * grad_h).sum() + (sum((s * d).sum() for s, d in zip(final, grad_final)) if final_grads else 0)
    expected = torch.autograd.grad(loss, leaves + (state_leaves or []))
    written_out = mlstm_chunkwise_backward(q, k, v, i, f, grad_h, grad_final, mask=mask, initial_state=state,
                                           chunk_size=chunk_size)
    for actual, wanted in zip(written_out, expected):
        assert_close(actual, wanted, rtol=1e-10, atol=1e-12)


def test_mlstm_chunkwise_backward_written_out_routes_ties_as_autograd():
    """After a padded first step, i = logsigmoid(f) makes the stabiliser's candidates tie exactly (the
    key's log weight, the entering memory's, and at the chunk end the decayed memory's): the gradient
    is split as torch splits it."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    f = torch.randn(1, 1, 3, generator=g, dtype=torch.float64)
    i = torch.nn.functional.logsigmoid(f)
    mask = torch.tensor([[False, True, True]])
    leaves = [x.clone().requires_grad_() for x in (q, k, v, i, f)]
    h, final = mlstm_chunkwise(*leaves, mask=mask, chunk_size=2)
    grad_h = torch.randn(h.shape, generator=g, dtype=torch.float64)
    grad_final = tuple(torch.randn(s.shape, generator=g, dtype=torch.float64) for s in final)
    loss = (h * grad_h).sum() + sum((s * d).sum() for s, d in zip(final, grad_final))
    expected = torch.autograd.grad(loss, leaves)
    written_out = mlstm_chunkwise_backward(q, k, v, i, f, grad_h, grad_final, mask=mask, chunk_size=2)
    for actual, wanted in zip(written_out, expected):
        assert_close(actual, wanted, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
def test_slstm_gradcheck(with_state):
    inputs = slstm_inputs(B=2, H=2, T=4, D=3, dtype=torch.float64)
    state = slstm_state(B=2, H=2, D=3, dtype=torch.float64) if with_state else ()
    leaves = tuple(x.requires_grad_() for x in (*inputs.values(), *state))

    def run(gates_x, recurrent_kernel, bias, *initial_state):
        h, final_state = slstm_recurrent(gates_x, recurrent_kernel, bias, initial_state=initial_state or None)
        return (h, *final_state)

    assert gradcheck(run, leaves)


# ---- 5. the official implementations -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["recurrent", "parallel", "chunkwise-4", "chunkwise-16"])
def test_mlstm_matches_official_parallel(form):
    from xlstm.blocks.mlstm.backends import parallel_stabilized_simple

    inputs = mlstm_inputs(T=37, Dqk=8, Dv=8)
    h, _ = MLSTM_FORMS[form](**inputs)
    q, k, v, i, f = inputs.values()
    h_official = parallel_stabilized_simple(q, k, v, i[..., None], f[..., None])
    assert_close(h, h_official, rtol=1e-5, atol=1e-5)


def test_mlstm_step_matches_official_step():
    """The official code scales the keys by D^-1/2 where we scale the queries: the outputs agree,
    its (C, n) are ours times D^-1/2 and m is the same."""
    from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple

    D = 8
    inputs = mlstm_inputs(T=13, Dqk=D, Dv=D)
    state = mlstm_state(Dqk=D, Dv=D)
    C, n, m = state
    official = (C / math.sqrt(D), n[..., None] / math.sqrt(D), m[..., None, None])
    for t in range(13):
        q, k, v, i, f = (x[:, :, t] for x in inputs.values())
        h, state = mlstm_step(q, k, v, i, f, state)
        h_official, official = recurrent_step_stabilized_simple(
            *official, q[:, :, None].clone(), k[:, :, None].clone(), v[:, :, None].clone(),
            i[..., None, None], f[..., None, None],
        )
        assert_close(h, h_official.squeeze(2), rtol=1e-5, atol=1e-5)
    C, n, m = state
    C_official, n_official, m_official = official
    assert_close(C / math.sqrt(D), C_official, rtol=1e-5, atol=1e-5)
    assert_close(n / math.sqrt(D), n_official.squeeze(-1), rtol=1e-5, atol=1e-5)
    assert_close(m, m_official.flatten(2).squeeze(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
def test_mlstm_chunkwise_matches_mlstm_kernels(with_state):
    """mlstm_kernels' native chunkwise form scales q like us; it needs T to be a multiple of its chunk."""
    from mlstm_kernels.torch.chunkwise.native import mlstm_chunkwise__native_autograd

    inputs = mlstm_inputs(T=48, Dqk=8, Dv=16)
    initial_state = mlstm_state(Dqk=8, Dv=16) if with_state else None
    h, (C, n, m) = mlstm_chunkwise(**inputs, initial_state=initial_state, chunk_size=16)
    C0, n0, m0 = initial_state if with_state else (None, None, None)
    h_ref, (C_ref, n_ref, m_ref) = mlstm_chunkwise__native_autograd(
        *inputs.values(), c_initial=C0, n_initial=n0, m_initial=None if m0 is None else m0[..., None],
        return_last_states=True, chunk_size=16,
    )
    assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    assert_close(C, C_ref, rtol=1e-5, atol=1e-5)
    assert_close(n, n_ref, rtol=1e-5, atol=1e-5)
    assert_close(m, m_ref.squeeze(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
def test_slstm_matches_official_vanilla_cell(with_state):
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    B, NH, T, D = 2, 3, 17, 4
    torch.manual_seed(0)
    cell = sLSTMCell(sLSTMCellConfig(hidden_size=NH * D, num_heads=NH, backend="vanilla", dtype="float32"))
    with torch.no_grad():
        cell._recurrent_kernel_.normal_(0.0, 0.5)
        cell._bias_.normal_(0.0, 1.0)
    x = torch.randn(B, T, 4 * NH * D)
    initial_state = slstm_state(B=B, H=NH, D=D) if with_state else None
    official_state = torch.stack([s.flatten(1) for s in initial_state]) if with_state else None
    with torch.no_grad():
        h_official, state_official = cell(x, official_state)
        gates_x = x.view(B, T, 4, NH, D).permute(0, 3, 1, 2, 4)
        recurrent_kernel = cell._recurrent_kernel_int2ext(cell._recurrent_kernel_)
        bias = cell._bias_int2ext(cell._bias_)
        h, state = slstm_recurrent(gates_x, recurrent_kernel, bias, initial_state=initial_state)
    assert_close(h, h_official, rtol=1e-5, atol=1e-5)
    for s, s_official in zip(state, state_official):
        assert_close(s.flatten(1), s_official, rtol=1e-5, atol=1e-5)


# ---- 6. sLSTM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["left", "right", "random"])
def test_slstm_padding_equals_the_unpadded_sequence(kind):
    inputs, initial_state, mask = slstm_inputs(B=3, T=16), slstm_state(B=3), padding_mask(kind)
    h, state = slstm_recurrent(**inputs, mask=mask, initial_state=initial_state)
    for b in range(3):
        real = mask[b]
        h_alone, state_alone = slstm_recurrent(
            inputs["gates_x"][b : b + 1, :, real], inputs["recurrent_kernel"], inputs["bias"],
            initial_state=select_state(initial_state, b),
        )
        assert_close(h[b : b + 1, :, real], h_alone, rtol=1e-5, atol=1e-5)
        for s, s_alone in zip(select_state(state, b), state_alone):
            assert_close(s, s_alone, rtol=1e-5, atol=1e-5)
        assert torch.equal(h[b, :, ~real], torch.zeros_like(h[b, :, ~real]))


def test_slstm_padded_step_holds_all_four_states():
    inputs = slstm_inputs(T=1)
    state = slstm_state()
    h, new_state = slstm_step(
        inputs["gates_x"][:, :, 0], inputs["recurrent_kernel"], inputs["bias"], state, mask=torch.tensor([True, False])
    )
    assert torch.equal(h[1], torch.zeros_like(h[1]))
    for s, s_new in zip(state, new_state):
        assert torch.equal(s_new[1], s[1])
        assert not torch.equal(s_new[0], s[0])


@pytest.mark.parametrize("split", [1, 6])
def test_slstm_two_pieces_equal_one_run(split):
    inputs, initial_state = slstm_inputs(T=13), slstm_state()
    gates_x, weights = inputs["gates_x"], (inputs["recurrent_kernel"], inputs["bias"])
    h1, state1 = slstm_recurrent(gates_x[:, :, :split], *weights, initial_state=initial_state)
    h2, state2 = slstm_recurrent(gates_x[:, :, split:], *weights, initial_state=state1)
    h, state = slstm_recurrent(gates_x, *weights, initial_state=initial_state)
    assert_close(torch.cat([h1, h2], dim=2), h, rtol=1e-5, atol=1e-5)
    for s_chained, s in zip(state2, state):
        assert_close(s_chained, s, rtol=1e-5, atol=1e-5)


def test_slstm_first_real_step_restarts_the_stabiliser():
    """From the empty (zero) state, also after leading padding, the first real step sets m = i~
    (n = 1, c = tanh(z~)); h is still zero then, so i~ = gates_x_i + bias_i."""
    inputs = slstm_inputs(B=2, T=6)
    # input gates well below log sigmoid(f~) + 0, which a stabiliser carried over from m = 0 would pick
    inputs["gates_x"][:, :, :, 0] -= 5.0
    first_real = torch.tensor([0, 4])
    mask = torch.arange(6) >= first_real[:, None]
    for b, t in enumerate(first_real.tolist()):
        _, (h, c, n, m) = slstm_recurrent(
            inputs["gates_x"][:, :, : t + 1], inputs["recurrent_kernel"], inputs["bias"], mask=mask[:, : t + 1]
        )
        i_raw, _, z_raw, _ = (inputs["gates_x"][b, :, t] + inputs["bias"]).unbind(1)
        assert_close(m[b], i_raw, rtol=0, atol=0)
        assert_close(n[b], torch.ones_like(n[b]), rtol=0, atol=0)
        assert_close(c[b], torch.tanh(z_raw), rtol=1e-6, atol=1e-6)


def test_slstm_extreme_gate_preactivations_stay_finite():
    inputs = slstm_inputs(T=20)
    sign = torch.randint(0, 2, inputs["gates_x"].shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inputs["gates_x"] = 50.0 * sign
    leaves = {name: x.requires_grad_() for name, x in inputs.items()}
    h, state = slstm_recurrent(**leaves)
    grads = torch.autograd.grad(random_linear_loss((h, *state)), list(leaves.values()))
    for tensor in (h, *state, *grads):
        assert torch.isfinite(tensor).all()


# ---- 7. NaN-safety of the mLSTM ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["parallel", "chunkwise-4", "chunkwise-16"])
def test_mlstm_extreme_gates_stay_finite_and_forms_agree(form):
    """Gate pre-activations uniform in [-30, 30] with a third of them at exactly +-30.

    The outputs and gradients get looser tolerances: here |n^T q| gets small enough that h reaches
    ~240, and the cumulative log forget gates (down to -30 a step) reach a few hundred, where float32
    resolves only ~3e-5; measured against float64, the float32 outputs are off by up to 2e-4
    (relative) and the gradients by up to 5e-4 of their largest entry. The states stay within 1e-5."""
    inputs = mlstm_inputs(T=37)
    g = torch.Generator().manual_seed(7)
    for name in ("i", "f"):
        gates = torch.rand(inputs[name].shape, generator=g) * 60 - 30
        extreme = torch.rand(gates.shape, generator=g) < 1 / 3
        inputs[name] = torch.where(extreme, 30 * gates.sign(), gates)
    initial_state = mlstm_state()
    actual = mlstm_outputs_and_grads(MLSTM_FORMS[form], inputs, initial_state)
    expected = mlstm_outputs_and_grads(mlstm_recurrent, inputs, initial_state)
    for tensor in (*actual[0], *actual[1], *expected[0], *expected[1]):
        assert torch.isfinite(tensor).all()
    assert_outputs_and_grads_close(actual, expected, h_tol=1e-3, state_tol=1e-5, grad_tol=2e-3)


# ---- 8. dtypes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_float64_stays_float64(form):
    h, state = MLSTM_FORMS[form](**mlstm_inputs(dtype=torch.float64))
    assert h.dtype == torch.float64
    assert all(s.dtype == torch.float64 for s in state)


@pytest.mark.parametrize("form", SEQUENCE_FORMS)
def test_mlstm_bfloat16_gives_bfloat16_outputs_and_float32_states(form):
    """The ops compute in float32 whatever the input dtype, so on the same (bf16-representable) values
    the bf16 result is the float32 one rounded to bf16 (relative error <= 2^-9): the states are equal
    and the outputs within a bf16 ulp."""
    inputs = mlstm_inputs(dtype=torch.bfloat16)
    h, state = MLSTM_FORMS[form](**inputs)
    h_ref, state_ref = MLSTM_FORMS[form](**{name: x.float() for name, x in inputs.items()})
    assert h.dtype == torch.bfloat16
    assert all(s.dtype == torch.float32 for s in state)
    assert_close(h.float(), h_ref, rtol=2**-8, atol=1e-6)
    for s, s_ref in zip(state, state_ref):
        assert_close(s, s_ref, rtol=1e-6, atol=1e-6)


def test_slstm_float64_stays_float64():
    h, state = ops.slstm(**slstm_inputs(dtype=torch.float64))
    assert h.dtype == torch.float64
    assert all(s.dtype == torch.float64 for s in state)


def test_slstm_bfloat16_gives_bfloat16_outputs_and_float32_states():
    """As for the mLSTM: float32 inside, so the bf16 output is the float32 one rounded."""
    inputs = slstm_inputs(dtype=torch.bfloat16)
    h, state = slstm_recurrent(**inputs)
    h_ref, state_ref = slstm_recurrent(**{name: x.float() for name, x in inputs.items()})
    assert h.dtype == torch.bfloat16
    assert all(s.dtype == torch.float32 for s in state)
    assert_close(h.float(), h_ref, rtol=2**-8, atol=1e-6)
    for s, s_ref in zip(state, state_ref):
        assert_close(s, s_ref, rtol=1e-6, atol=1e-6)
