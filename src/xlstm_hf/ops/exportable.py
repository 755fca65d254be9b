"""The PyTorch references of the recurrences as opaque operators, for `torch.export`.

Traced, a recurrence becomes a loop over its chunks (mLSTM) or steps (sLSTM) unrolled to the length of the
example input, and the exported program serves that length only. Exported as one operator each, with a fake
kernel that gives the shapes, the program serves any length: at run time the operator runs the reference
(the compiled kernels, where they serve the op, are operators of their own already). For inference: the
operators have no autograd formula.
"""

import torch

from .mlstm.chunkwise import mlstm_chunkwise
from .slstm.recurrent import slstm_recurrent


@torch.library.custom_op("xlstm_hf::mlstm_chunkwise_reference", mutates_args=())
def mlstm_chunkwise_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor, mask: torch.Tensor | None,
    C: torch.Tensor, n: torch.Tensor, m: torch.Tensor, chunk_size: int, eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`mlstm_chunkwise` with the state as three tensors: -> (h, C, n, m)."""
    h, (C, n, m) = mlstm_chunkwise(q, k, v, i, f, mask=mask, initial_state=(C, n, m), chunk_size=chunk_size, eps=eps)
    return h, C.clone(), n.clone(), m.clone()  # an operator's outputs may not alias its inputs


@mlstm_chunkwise_reference.register_fake
def _(q, k, v, i, f, mask, C, n, m, chunk_size, eps):
    return v.new_empty(*q.shape[:3], v.shape[-1]), torch.empty_like(C), torch.empty_like(n), torch.empty_like(m)


@torch.library.custom_op("xlstm_hf::slstm_reference", mutates_args=())
def slstm_reference(
    gates_x: torch.Tensor, recurrent_kernel: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
    h: torch.Tensor, c: torch.Tensor, n: torch.Tensor, m: torch.Tensor, bf16_rounding: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`slstm_recurrent` with the state as four tensors: -> (h over the sequence, h, c, n, m)."""
    outputs, state = slstm_recurrent(gates_x, recurrent_kernel, bias, mask=mask, initial_state=(h, c, n, m),
                                     bf16_rounding=bf16_rounding)
    return outputs, *(s.clone() for s in state)


@slstm_reference.register_fake
def _(gates_x, recurrent_kernel, bias, mask, h, c, n, m, bf16_rounding):
    B, H, T, _, D = gates_x.shape
    return gates_x.new_empty(B, H, T, D), *(torch.empty_like(s) for s in (h, c, n, m))
