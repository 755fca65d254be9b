"""The backward of the chunkwise mLSTM written out (docs/design.md 1.3): the gradients autograd takes through
`mlstm_chunkwise`, as explicit products per chunk plus one reverse loop over chunks for the memory.

It is the specification of the CUDA backward kernel (csrc/cuda) and is held to autograd in float64 by
the tests, so that the kernel can be checked against a formula rather than against a tape. The maxima of
the stabiliser route their gradients as torch does (`torch.maximum` splits ties evenly, `amax` shares
among all maxima).
"""

import torch
import torch.nn.functional as F

from ..gates import LOG_FLOOR_CAP, MASKED_LOG_GATE, at_least_float32, mlstm_log_gates, normaliser_floor
from .chunkwise import (
    MLSTMState,
    _memory_entering_each_chunk,
    log_forget_to_chunk_end,
    log_forget_within_chunks,
    zero_mlstm_state,
)


def mlstm_chunkwise_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    grad_h: torch.Tensor,
    grad_final_state: MLSTMState | None = None,
    *,
    mask: torch.Tensor | None = None,
    initial_state: MLSTMState | None = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, ...]:
    """Gradients of `mlstm_chunkwise` (same arguments) given those of its outputs: grad_h [B, H, T, Dv] and
    the final state's (C, n, m) or None. -> (dq, dk, dv, di, df, dC, dn, dm), the last three for the
    initial state, in float32 (float64 for float64 inputs)."""
    B, H, T, Dqk = q.shape
    state = initial_state if initial_state is not None else zero_mlstm_state(q, v)
    state = tuple(at_least_float32(s) for s in state)
    i_gate, log_f = mlstm_log_gates(i, f, None if mask is None else mask[:, None, :])
    L = max(1, min(chunk_size, T))
    N = -(-T // L)
    extra = N * L - T
    q, k, v = (F.pad(at_least_float32(x), (0, 0, 0, extra)).unflatten(2, (N, L)) for x in (q, k, v))
    ii = F.pad(i_gate, (0, extra), value=MASKED_LOG_GATE).unflatten(2, (N, L))  # [B, H, N, L]
    log_f = F.pad(log_f, (0, extra)).unflatten(2, (N, L))  # [B, H, N, L]
    if mask is not None:
        grad_h = grad_h.masked_fill(~mask[:, None, :, None], 0.0)
    grad_h = F.pad(at_least_float32(grad_h), (0, 0, 0, extra)).unflatten(2, (N, L))
    qs = q * Dqk**-0.5
    entering, _ = _memory_entering_each_chunk(k, v, ii, log_f, state)

    dqs, dk, dv, db, dii, into_entering = _output_grads(qs, k, v, ii, log_f, entering, grad_h, eps)
    grad_initial = _memory_grads(k, v, ii, log_f, entering, into_entering, grad_final_state, dk, dv, db, dii)

    d_log_f = db.flip(-1).cumsum(-1).flip(-1).flatten(2)[:, :, :T]  # b = cumsum(log f) within each chunk
    di = dii.flatten(2)[:, :, :T]
    df = d_log_f * torch.sigmoid(-at_least_float32(f))
    if mask is not None:
        di, df = (x.masked_fill(~mask[:, None, :], 0.0) for x in (di, df))
    dq = (dqs * Dqk**-0.5).flatten(2, 3)[:, :, :T]
    dk, dv = (x.flatten(2, 3)[:, :, :T] for x in (dk, dv))
    return (dq, dk, dv, di, df, *grad_initial)


def _route_max(a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of torch.maximum(a, b): to the larger, halved on a tie."""
    share_a = (a > b).to(grad.dtype) + 0.5 * (a == b).to(grad.dtype)
    return grad * share_a, grad * (1 - share_a)


def _route_amax(x: torch.Tensor, largest: torch.Tensor, grad: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The gradient of x.amax(-1) = largest: shared evenly by the maxima (among `valid` entries)."""
    is_max = (x == largest[..., None]) & valid
    return is_max.to(grad.dtype) * (grad / is_max.sum(-1).clamp(min=1))[..., None]


def _output_grads(qs, k, v, ii, log_f, entering, grad_h, eps):
    """The chunks' outputs backwards, for all chunks at once (db: of b = cumsum(log f) within each chunk,
    of which the forward's sums of log f over spans of steps are differences). -> (d qs, dk, dv, db, dii, and the
    gradients (dC, dn, dm) the outputs send to the memory that entered each chunk)."""
    C, n, m = entering  # [B, H, N, Dqk, Dv], [B, H, N, Dqk], [B, H, N]
    L = qs.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool, device=qs.device).tril()
    log_D = log_forget_within_chunks(log_f) + ii[..., None, :]  # b_t - b_j + ii_j, -inf above the diagonal
    rho = log_f.cumsum(-1) + m[..., None]  # [B, H, N, L] log weight of the entering memory
    largest_key = log_D.amax(-1)
    m_t = torch.maximum(largest_key, rho)
    P = torch.exp(log_D - m_t[..., None])  # [B, H, N, L, L]
    R = torch.exp(rho - m_t)  # [B, H, N, L]
    A = qs @ k.transpose(-1, -2)
    S = A * P
    q_read = qs * R[..., None]
    numerator = S @ v + q_read @ C
    denominator = S.sum(-1) + (q_read @ n[..., None]).squeeze(-1)
    floor = normaliser_floor(m_t)
    normaliser = torch.maximum(denominator.abs(), floor) + eps
    h = numerator / normaliser[..., None]

    # h = numerator / normaliser, normaliser = max(|denominator|, exp(-m_t)) + eps
    d_numerator = grad_h / normaliser[..., None]
    d_normaliser = -(grad_h * h).sum(-1) / normaliser
    d_abs, d_floor = _route_max(denominator.abs(), floor, d_normaliser)
    d_denominator = d_abs * torch.sgn(denominator)
    d_m_t = -floor * d_floor * (-m_t <= LOG_FLOOR_CAP)  # the cap passes no gradient
    # numerator = S v + R qs C;  denominator = rowsum(S) + R qs n
    dS = d_numerator @ v.transpose(-1, -2) + d_denominator[..., None]
    dv = S.transpose(-1, -2) @ d_numerator
    read = d_numerator @ C.transpose(-1, -2) + d_denominator[..., None] * n[..., None, :]  # [B, H, N, L, Dqk]
    dqs = read * R[..., None]
    dR = (read * qs).sum(-1)
    into_entering = (
        q_read.transpose(-1, -2) @ d_numerator,  # dC
        (q_read * d_denominator[..., None]).sum(-2),  # dn
    )
    # S = A * P, A = qs k^T, P = exp(log_D - m_t), R = exp(rho - m_t)
    dA = dS * P
    dqs = dqs + dA @ k
    dk = dA.transpose(-1, -2) @ qs
    d_log_D = (dS * A * P).masked_fill(~causal, 0.0)
    d_rho = dR * R
    d_m_t = d_m_t - d_log_D.sum(-1) - d_rho
    # m_t = maximum(amax(log_D), rho)
    d_largest, d_rho_max = _route_max(largest_key, rho, d_m_t)
    d_rho = d_rho + d_rho_max
    d_log_D = d_log_D + _route_amax(log_D, largest_key, d_largest, causal)
    # log_D = b_t - b_j + ii_j;  rho = b_t + m
    db = d_log_D.sum(-1) - d_log_D.sum(-2) + d_rho
    dii = d_log_D.sum(-2)
    return dqs, dk, dv, db, dii, (*into_entering, d_rho.sum(-1))


def _memory_grads(k, v, ii, log_f, entering, into_entering, grad_final_state, dk, dv, db, dii):
    """The inter-chunk recurrence backwards, chunk by chunk from the last: adds the gradients of the keys,
    values and gates through the memory to dk, dv, db, dii (in place) and returns those of the initial
    state."""
    C_all, n_all, m_all = entering
    dC_out, dn_out, dm_out = into_entering
    if grad_final_state is None:
        grad_final_state = (None, None, None)
    dC, dn, dm = (
        g.to(ref.dtype) if g is not None else torch.zeros_like(ref[:, :, 0])
        for g, ref in zip(grad_final_state, (C_all, n_all, m_all))
    )
    g_all = log_f.sum(-1)  # [B, H, N] log forget over each whole chunk, b_L
    a_all = log_forget_to_chunk_end(log_f) + ii  # [B, H, N, L] g - b + ii
    L = log_f.shape[-1]
    every = torch.ones(L, dtype=torch.bool, device=log_f.device)
    for c in reversed(range(k.shape[2])):
        C, n, m, g, a = C_all[:, :, c], n_all[:, :, c], m_all[:, :, c], g_all[:, :, c], a_all[:, :, c]
        kc, vc = k[:, :, c], v[:, :, c]
        a_max = a.amax(-1)
        m_next = torch.maximum(g + m, a_max)
        decay = torch.exp(g + m - m_next)  # [B, H]
        w = torch.exp(a - m_next[..., None])  # [B, H, L]
        # C' = decay C + sum_j w_j k_j v_j^T;  n' = decay n + sum_j w_j k_j
        d_decay = (dC * C).sum((-1, -2)) + (dn * n).sum(-1)
        k_dC = kc @ dC  # [B, H, L, Dv]
        dw = (k_dC * vc).sum(-1) + (kc * dn[..., None, :]).sum(-1)
        dk[:, :, c] += w[..., None] * (vc @ dC.transpose(-1, -2) + dn[..., None, :])
        dv[:, :, c] += w[..., None] * k_dC
        # decay = exp(g + m - m'), w = exp(a - m'), m' = maximum(g + m, amax(a))
        d_gm = d_decay * decay
        da = dw * w
        d_m_next = dm - d_gm - da.sum(-1)
        d_gm_max, d_a_max = _route_max(g + m, a_max, d_m_next)
        d_gm = d_gm + d_gm_max
        da = da + _route_amax(a, a_max, d_a_max, every)
        # a = g - b + ii, g = b_L
        db[:, :, c] -= da
        db[:, :, c, -1] += d_gm + da.sum(-1)
        dii[:, :, c] += da
        dC = decay[..., None, None] * dC + dC_out[:, :, c]
        dn = decay[..., None] * dn + dn_out[:, :, c]
        dm = d_gm + dm_out[:, :, c]
    return dC, dn, dm
