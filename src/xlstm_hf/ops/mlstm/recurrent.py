"""mLSTM, recurrent form (docs/design.md 1.1): one step, and a loop of steps as the sequence reference."""

import torch

from ..gates import at_least_float32, mlstm_log_gates, normaliser_floor
from .chunkwise import MLSTMState, zero_mlstm_state


def mlstm_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    state: MLSTMState,
    *,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, MLSTMState]:
    """One mLSTM step for all heads.

    q, k: [B, H, Dqk]; v: [B, H, Dv]; i, f: [B, H]; state: (C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H]);
    mask: [B] bool, False where the step is padding (the state then passes through unchanged).
    Returns h [B, H, Dv] (dtype of v, zero at padded steps) and the new state in float32.
    """
    C, n, m = state
    i, log_f = mlstm_log_gates(i, f, None if mask is None else mask[:, None])
    q = at_least_float32(q) * q.shape[-1] ** -0.5
    k, v_ = at_least_float32(k), at_least_float32(v)

    m_next = torch.maximum(log_f + m, i)  # [B, H]
    decay = torch.exp(log_f + m - m_next)
    write = torch.exp(i - m_next)
    C = decay[..., None, None] * C + write[..., None, None] * (k[..., :, None] * v_[..., None, :])
    n = decay[..., None] * n + write[..., None] * k

    numerator = (q[..., None, :] @ C).squeeze(-2)  # [B, H, Dv]
    denominator = (q * n).sum(-1)  # [B, H]
    h = numerator / (torch.maximum(denominator.abs(), normaliser_floor(m_next)) + eps)[..., None]
    if mask is not None:
        h = h.masked_fill(~mask[:, None, None], 0.0)
    return h.to(v.dtype), (C, n, m_next)


def mlstm_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: MLSTMState | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, MLSTMState]:
    """The step applied along the sequence; same arguments and results as `mlstm_chunkwise`."""
    state = initial_state if initial_state is not None else zero_mlstm_state(q, v)
    outputs = []
    for t in range(q.shape[2]):
        step_mask = None if mask is None else mask[:, t]
        h, state = mlstm_step(
            q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state, mask=step_mask, eps=eps
        )
        outputs.append(h)
    return torch.stack(outputs, dim=2), state
