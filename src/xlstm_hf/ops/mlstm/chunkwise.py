"""mLSTM, chunkwise form (docs/design.md 1.3), and the parallel form as its one-chunk case (docs/design.md 1.2).

The sequence is cut into chunks of L steps. A loop over chunks carries the matrix memory `(C, n, m)`
from chunk to chunk; inside every chunk the outputs come from an attention-like product over the
chunk plus a read of the memory that entered it, computed for all chunks at once. Memory is linear in
T (one state per chunk) and the work is GEMMs. Every quantity is kept in stabilised units: the true
memory is `exp(m) * C`, and the stabiliser `m_t` equals the one of the step-by-step recurrence, so the
forms agree to rounding.
"""

import torch
import torch.nn.functional as F

from ..gates import MASKED_LOG_GATE, at_least_float32, mlstm_log_gates, normaliser_floor

MLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def zero_mlstm_state(q: torch.Tensor, v: torch.Tensor) -> MLSTMState:
    """Empty memory for inputs `q [B, H, T, Dqk]`, `v [B, H, T, Dv]`: C, n zero and stabiliser m = 0."""
    B, H, _, Dqk = q.shape
    Dv = v.shape[-1]
    dtype = torch.promote_types(q.dtype, torch.float32)
    C = q.new_zeros(B, H, Dqk, Dv, dtype=dtype)
    n = q.new_zeros(B, H, Dqk, dtype=dtype)
    m = q.new_zeros(B, H, dtype=dtype)
    return C, n, m


def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: MLSTMState | None = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, MLSTMState]:
    """Chunkwise mLSTM over a whole sequence of any length.

    q, k: [B, H, T, Dqk]; v: [B, H, T, Dv]; i, f: [B, H, T] gate pre-activations;
    mask: [B, T] bool, False at padded steps; initial_state: (C [B, H, Dqk, Dv], n [B, H, Dqk], m [B, H]).
    Returns h [B, H, T, Dv] (dtype of v, zero at padded steps) and the final state in float32.
    """
    B, H, T, Dqk = q.shape
    out_dtype = v.dtype
    state = initial_state if initial_state is not None else zero_mlstm_state(q, v)
    i, log_f = mlstm_log_gates(i, f, None if mask is None else mask[:, None, :])

    L = max(1, min(chunk_size, T))
    N = -(-T // L)
    extra = N * L - T  # identity steps appended so that T divides into chunks
    q, k, v = (F.pad(at_least_float32(x), (0, 0, 0, extra)).unflatten(2, (N, L)) for x in (q, k, v))
    i = F.pad(i, (0, extra), value=MASKED_LOG_GATE).unflatten(2, (N, L))  # [B, H, N, L]
    log_f = F.pad(log_f, (0, extra)).unflatten(2, (N, L))
    q = q * Dqk**-0.5

    entering, final_state = _memory_entering_each_chunk(k, v, i, log_f, state)
    h = _chunk_outputs(q, k, v, i, log_f, entering, eps)  # [B, H, N, L, Dv]

    h = h.flatten(2, 3)[:, :, :T]
    if mask is not None:
        h = h.masked_fill(~mask[:, None, :, None], 0.0)
    return h.to(out_dtype), final_state


def mlstm_parallel(
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
    """Parallel (quadratic) mLSTM: the chunkwise form with one chunk spanning the whole sequence."""
    return mlstm_chunkwise(
        q, k, v, i, f, mask=mask, initial_state=initial_state, chunk_size=q.shape[2], eps=eps
    )


# Sums of log forget gates over a span of steps are summed over that span, never taken as a difference
# b_t - b_j of sums from the chunk start: those grow with the chunk (to thousands with forget gates near 0,
# or over the long single chunk of the parallel form), and float32 keeps their difference only to their
# own ulp. Over 4,096 steps of the parallel form that difference put 1.3e-3 into h (the sums over spans: 1e-5;
# the recurrent form: 3e-5).


def log_forget_within_chunks(log_f: torch.Tensor) -> torch.Tensor:
    """log_f [..., L] -> [..., L, L]: at (t, j) the log forget from key j to query t, the sum of log_f over
    steps j+1..t (0 on the diagonal, -inf above it)."""
    L = log_f.shape[-1]
    causal = torch.ones(L, L, dtype=torch.bool, device=log_f.device).tril()
    spans = log_f[..., :, None].expand(*log_f.shape, L).tril(-1).cumsum(-2)  # log_f at (t, j) for t > j, summed
    return spans.masked_fill(~causal, float("-inf"))


def log_forget_to_chunk_end(log_f: torch.Tensor) -> torch.Tensor:
    """log_f [..., L] -> [..., L]: the log forget from step j to the chunk end, the sum of log_f over steps
    j+1..L-1 (summed from the end backwards)."""
    return F.pad(log_f[..., 1:].flip(-1).cumsum(-1).flip(-1), (0, 1))


def _memory_entering_each_chunk(
    k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, log_f: torch.Tensor, state: MLSTMState
) -> tuple[MLSTMState, MLSTMState]:
    """Inter-chunk recurrence: the memory before every chunk ([B, H, N, ...]) and after the last one.

    k: [B, H, N, L, Dqk]; v: [B, H, N, L, Dv]; i, log_f: [B, H, N, L].
    """
    g = log_f.sum(-1)  # [B, H, N] log forget over each whole chunk
    a = log_forget_to_chunk_end(log_f) + i  # [B, H, N, L] log weight of each step's key-value at the chunk end
    a_max = a.amax(-1)  # [B, H, N]
    C, n, m = state
    before = []
    # the chunks by unbind, not by indexing: the backward of one index fills a gradient of the whole tensor,
    # which over N chunks made training quadratic in the length (x3.4 slower per token at 16k than at 4k)
    for k_c, v_c, a_c, g_c, a_max_c in zip(*(x.unbind(2) for x in (k, v, a, g, a_max))):
        before.append((C, n, m))
        m_next = torch.maximum(g_c + m, a_max_c)  # [B, H]
        decay = torch.exp(g_c + m - m_next)  # [B, H]
        weighted_k = k_c * torch.exp(a_c - m_next[..., None])[..., None]  # [B, H, L, Dqk]
        C = decay[..., None, None] * C + weighted_k.transpose(-1, -2) @ v_c
        n = decay[..., None] * n + weighted_k.sum(-2)
        m = m_next
    entering = tuple(torch.stack(s, dim=2) for s in zip(*before))
    return entering, (C, n, m)


def _chunk_outputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    log_f: torch.Tensor,
    entering: MLSTMState,
    eps: float,
) -> torch.Tensor:
    """Outputs of all chunks at once: attention-like part within the chunk plus a read of the memory
    that entered it, under the shared stabiliser m_t. Shapes as above; q is already scaled."""
    C, n, m = entering  # [B, H, N, Dqk, Dv], [B, H, N, Dqk], [B, H, N]
    log_D = log_forget_within_chunks(log_f) + i[..., None, :]  # [B, H, N, L, L] key j -> query t
    m_read = log_f.cumsum(-1) + m[..., None]  # [B, H, N, L] log weight of the entering memory at step t
    m_t = torch.maximum(log_D.amax(-1), m_read)  # [B, H, N, L]

    S = (q @ k.transpose(-1, -2)) * torch.exp(log_D - m_t[..., None])  # [B, H, N, L, L]
    q_read = q * torch.exp(m_read - m_t)[..., None]  # [B, H, N, L, Dqk]
    numerator = S @ v + q_read @ C  # [B, H, N, L, Dv]
    denominator = S.sum(-1) + (q_read @ n[..., None]).squeeze(-1)  # [B, H, N, L]
    normaliser = torch.maximum(denominator.abs(), normaliser_floor(m_t)) + eps
    return numerator / normaliser[..., None]
