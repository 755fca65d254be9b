"""sLSTM, the sequential cell with memory mixing (docs/design.md 1.4): one step, and the loop over a sequence.

Per unit the state is `(h, c, n, m)`. An empty memory (n = 0, as in the zero initial state) restarts
the stabiliser at the input gate, `m_t = i_t`, as the official cell does on its first step; every
real step leaves n >= 1, so n = 0 means exactly "nothing stored yet".

`bf16_rounding=True` computes what the PyTorch sLSTM of TiRex computes (docs/tirex.md): the gate inputs,
the recurrent kernel, its product with the previous output and the four states are rounded to bfloat16 at
every step, the pointwise maths runs in float32, and the forget pre-activation is clamped at
`FORGET_CLAMP`. Gradients treat the rounding and the clamp as the identity (straight-through).
"""

import torch
import torch.nn.functional as F

from ..gates import MASKED_LOG_GATE, at_least_float32

SLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

FORGET_CLAMP = 15.0  # the forget pre-activation's upper bound under bf16_rounding


def zero_slstm_state(gates_x: torch.Tensor) -> SLSTMState:
    """Empty state (h, c, n, m), each [B, H, D] in float32 (or wider), for inputs `gates_x [B, H, T, 4, D]`."""
    B, H, _, _, D = gates_x.shape
    dtype = torch.promote_types(gates_x.dtype, torch.float32)
    return tuple(gates_x.new_zeros(B, H, D, dtype=dtype) for _ in range(4))


def round_to_bfloat16(x: torch.Tensor) -> torch.Tensor:
    """`x` rounded to the nearest bfloat16 (ties to even), kept in its dtype; the gradient passes unchanged."""
    return x + (x.to(torch.bfloat16).to(x.dtype) - x).detach()


def clamp_straight_through(x: torch.Tensor, upper: float) -> torch.Tensor:
    """min(x, upper); the gradient passes unchanged."""
    return x + (x.clamp(max=upper) - x).detach()


def slstm_step(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    state: SLSTMState,
    *,
    mask: torch.Tensor | None = None,
    bf16_rounding: bool = False,
) -> tuple[torch.Tensor, SLSTMState]:
    """One sLSTM step for all heads.

    gates_x: [B, H, 4, D] input contributions to the gates (i, f, z, o); recurrent_kernel: [H, D, 4, D]
    (unit d of head h's previous output -> gate g, unit e); bias: [H, 4, D]; state: (h, c, n, m), each
    [B, H, D]; mask: [B] bool, False where the step is padding (the state then passes through).
    With `bf16_rounding`, `gates_x`, `recurrent_kernel` and `state` must hold bfloat16 values already
    (as `slstm_recurrent` gives them).
    Returns the output h [B, H, D] (float32 or wider, zero at padded steps) and the new state.
    """
    h, c, n, m = state
    recurrent = torch.einsum("bhd,hdge->bhge", h, recurrent_kernel)
    if bf16_rounding:  # (W x + bf16(R h)) + b, f clamped
        raw = at_least_float32(gates_x) + round_to_bfloat16(recurrent) + bias
    else:
        raw = at_least_float32(gates_x) + bias + recurrent
    i, f, z, o = raw.unbind(2)  # each [B, H, D]
    if bf16_rounding:
        f = clamp_straight_through(f, FORGET_CLAMP)

    m_prev = torch.where(n == 0, MASKED_LOG_GATE, m)  # empty memory: the stabiliser restarts at i
    log_f_plus_m = m_prev + F.logsigmoid(f)
    m_next = torch.maximum(i, log_f_plus_m)
    input_gate = torch.exp(i - m_next)
    forget_gate = torch.exp(log_f_plus_m - m_next)
    c_next = forget_gate * c + input_gate * torch.tanh(z)
    n_next = forget_gate * n + input_gate
    h_next = torch.sigmoid(o) * c_next / n_next

    new_state = (h_next, c_next, n_next, m_next)
    if bf16_rounding:
        new_state = tuple(round_to_bfloat16(s) for s in new_state)
        h_next = new_state[0]
    if mask is None:
        return h_next, new_state
    keep = mask[:, None, None]
    new_state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
    return h_next.masked_fill(~keep, 0.0), new_state


def slstm_recurrent(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: SLSTMState | None = None,
    bf16_rounding: bool = False,
    resets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SLSTMState]:
    """sLSTM over a sequence.

    gates_x: [B, H, T, 4, D]; recurrent_kernel: [H, D, 4, D]; bias: [H, 4, D]; mask: [B, T] bool;
    initial_state: (h, c, n, m), each [B, H, D]; bf16_rounding: see the module docstring; resets: [B, T] bool,
    True where a sequence starts (docs/design.md 1.7): the state before that step is discarded. Returns h
    [B, H, T, D] (dtype of gates_x) and the final state in float32.
    """
    state = initial_state if initial_state is not None else zero_slstm_state(gates_x)
    recurrent_kernel, bias = at_least_float32(recurrent_kernel), at_least_float32(bias)
    gates = at_least_float32(gates_x)
    if bf16_rounding:
        gates, recurrent_kernel = round_to_bfloat16(gates), round_to_bfloat16(recurrent_kernel)
        state = tuple(round_to_bfloat16(at_least_float32(s)) for s in state)
    outputs = []
    for t in range(gates.shape[2]):
        if resets is not None:
            state = tuple(s.masked_fill(resets[:, t, None, None], 0.0) for s in state)
        step_mask = None if mask is None else mask[:, t]
        h, state = slstm_step(gates[:, :, t], recurrent_kernel, bias, state, mask=step_mask,
                              bf16_rounding=bf16_rounding)
        outputs.append(h)
    return torch.stack(outputs, dim=2).to(gates_x.dtype), state
