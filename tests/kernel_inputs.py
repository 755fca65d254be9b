"""Inputs of the recurrence kernels and the comparisons of their results with the reference, shared by
the tests of the compiled CPU kernels and of the CUDA kernels."""

import torch
from torch.testing import assert_close

TOLERANCE = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 1e-12, "atol": 1e-12}}
RELATIVE = {torch.float32: 1e-5, torch.float64: 1e-12}


def randn(generator, *shape, dtype, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).mul(scale).add(shift).to(dtype)


def slstm_inputs(B, H, T, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    gates_x = randn(g, B, H, T, 4, D, dtype=dtype, scale=2.0)
    gates_x[:, :, :, 1] += 3.0  # forget gates mostly open
    return {
        "gates_x": gates_x,
        "recurrent_kernel": randn(g, H, D, 4, D, dtype=dtype, scale=0.5),
        "bias": randn(g, H, 4, D, dtype=dtype, scale=0.5),
    }


def slstm_state(B, H, D, dtype, seed=1):
    """A non-empty state (n >= 1) or, for `empty`, the zero state."""
    g = torch.Generator().manual_seed(seed)
    h, c, m = (randn(g, B, H, D, dtype=dtype) for _ in range(3))
    return h, c, randn(g, B, H, D, dtype=dtype).abs() + 1.0, m


def padding_mask(B, T, kind, seed=2):
    mask = torch.ones(B, T, dtype=torch.bool)
    if kind == "left":
        mask[0, : T // 2] = False
    elif kind == "right":
        mask[-1, T - T // 3 :] = False
    elif kind == "random":
        mask = torch.rand(B, T, generator=torch.Generator().manual_seed(seed)) > 0.3
    return None if kind == "none" else mask


def outputs_and_gradients(fn, inputs: dict, initial_state, mask, seed=3):
    """Run `fn`, backprop a random linear function of its output and final state, and return
    (output, final state, gradients of the inputs and of the initial state)."""
    leaves = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    state = None if initial_state is None else tuple(s.clone().requires_grad_() for s in initial_state)
    h, final = fn(**leaves, mask=mask, initial_state=state)
    g = torch.Generator().manual_seed(seed)
    loss = (h * randn(g, *h.shape, dtype=h.dtype).to(h.device)).sum()
    loss = loss + sum((s * randn(g, *s.shape, dtype=s.dtype).to(s.device)).sum() for s in final)
    wrt = list(leaves.values()) + (list(state) if state is not None else [])
    return h.detach(), [s.detach() for s in final], torch.autograd.grad(loss, wrt)


def assert_all_close(actual, expected, dtype):
    """Each pair close to `RELATIVE[dtype]` of the expected tensor's scale: gradients sum over many steps
    in another order than autograd's, so a small entry of a large gradient carries its rounding."""
    for a, e in zip(actual, expected):
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
        assert_close(a, e, rtol=RELATIVE[dtype], atol=RELATIVE[dtype] * scale)


def mlstm_step_inputs(B, H, Dqk, Dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        randn(g, B, H, Dqk, dtype=dtype),
        randn(g, B, H, Dqk, dtype=dtype),
        randn(g, B, H, Dv, dtype=dtype),
        randn(g, B, H, dtype=dtype, scale=2.0),
        randn(g, B, H, dtype=dtype, scale=2.0, shift=3.0),
    ), (randn(g, B, H, Dqk, Dv, dtype=dtype), randn(g, B, H, Dqk, dtype=dtype), randn(g, B, H, dtype=dtype))


def step_outputs_and_gradients(step, inputs, state, mask, seed=3):
    leaves = [x.clone().requires_grad_() for x in (*inputs, *state)]
    h, new_state = step(*leaves[:5], tuple(leaves[5:]), mask=mask)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * randn(g, *t.shape, dtype=t.dtype).to(t.device)).sum() for t in (h, *new_state))
    return [t.detach() for t in (h, *new_state)], torch.autograd.grad(loss, leaves)
