"""The xLSTM recurrences behind one calling convention, and the one place that picks how each runs.

Every op takes its sequence inputs as `[B, H, T, ...]`, an optional padding `mask [B, T]` (False at
padded steps, which leave every state untouched), an optional `initial_state`, and returns
`(outputs, final_state)` with states in float32.
"""

from typing import Literal

import torch

from .mlstm import MLSTMState, mlstm_chunkwise, mlstm_parallel, mlstm_recurrent
from .slstm import SLSTMState, slstm_recurrent

MLSTMForm = Literal["chunkwise", "parallel", "recurrent"]

_MLSTM_FORMS = {"chunkwise": mlstm_chunkwise, "parallel": mlstm_parallel, "recurrent": mlstm_recurrent}


def mlstm(
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
    form: MLSTMForm = "chunkwise",
) -> tuple[torch.Tensor, MLSTMState]:
    """mLSTM over a sequence: q, k [B, H, T, Dqk], v [B, H, T, Dv], i, f [B, H, T] -> h [B, H, T, Dv].

    A single step (T = 1, decoding) always runs the recurrent step; longer inputs run `form`.
    """
    if q.shape[2] == 1:
        form = "recurrent"
    kwargs = {"chunk_size": chunk_size} if form == "chunkwise" else {}
    return _MLSTM_FORMS[form](q, k, v, i, f, mask=mask, initial_state=initial_state, eps=eps, **kwargs)


def slstm(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: SLSTMState | None = None,
) -> tuple[torch.Tensor, SLSTMState]:
    """sLSTM over a sequence: gates_x [B, H, T, 4, D], recurrent_kernel [H, D, 4, D], bias [H, 4, D]
    -> h [B, H, T, D]."""
    return slstm_recurrent(gates_x, recurrent_kernel, bias, mask=mask, initial_state=initial_state)


__all__ = ["MLSTMForm", "MLSTMState", "SLSTMState", "mlstm", "slstm"]
