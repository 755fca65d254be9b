"""The emulated CUDA kernels with the calling convention of the references, as `xlstm_hf.ops.compiled` wraps
the real ones: the forward and backward kernels of cuda_ops.cpp joined by autograd."""

import torch

from xlstm_hf.ops.mlstm.chunkwise import zero_mlstm_state

from .build import emulated_kernels


class _SLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates_x, recurrent_kernel, bias, initial, mask):
        h, final, states, raw = emulated_kernels().slstm_forward(gates_x, recurrent_kernel, bias, mask, initial)
        ctx.save_for_backward(recurrent_kernel, states, raw)
        ctx.mask = mask
        return h, final

    @staticmethod
    def backward(ctx, grad_h, grad_final):
        recurrent_kernel, states, raw = ctx.saved_tensors
        grads = emulated_kernels().slstm_backward(grad_h, grad_final, recurrent_kernel, ctx.mask, states, raw)
        return (*grads, None)


def slstm(gates_x, recurrent_kernel, bias, *, mask=None, initial_state=None, resets=None):
    """`slstm_recurrent` on the emulated kernels (float32 or float64); `resets` passed as `compiled.slstm`
    passes them, in the kind of every step (0 padded, 1 real, 2 a start)."""
    if resets is not None:
        real = mask if mask is not None else torch.ones_like(resets)
        mask = real.to(torch.uint8) + (resets & real).to(torch.uint8)
    B, H, _, _, D = gates_x.shape
    initial = gates_x.new_zeros(4, B, H, D) if initial_state is None else torch.stack(initial_state)
    h, final = _SLSTM.apply(gates_x, recurrent_kernel, bias, initial, mask)
    return h, tuple(final.unbind(0))


class _Chunkwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, i, f, mask, C, n, m, chunk_size, eps):
        ctx.save_for_backward(q, k, v, i, f, mask, C, n, m)
        ctx.chunk_size, ctx.eps = chunk_size, eps
        return tuple(emulated_kernels().mlstm_chunkwise_forward(q, k, v, i, f, mask, C, n, m, chunk_size, eps))

    @staticmethod
    def backward(ctx, grad_h, grad_C, grad_n, grad_m):
        q, k, v, i, f, mask, C, n, m = ctx.saved_tensors
        dq, dk, dv, di, df, dC, dn, dm = emulated_kernels().mlstm_chunkwise_backward(
            grad_h, grad_C, grad_n, grad_m, q, k, v, i, f, mask, C, n, m, ctx.chunk_size, ctx.eps
        )
        return dq, dk, dv, di, df, None, dC, dn, dm, None, None


def mlstm_chunkwise(q, k, v, i, f, *, mask=None, initial_state=None, chunk_size=64, eps=1e-6):
    """`mlstm_chunkwise` on the emulated kernels (q, k, v in float32, bfloat16 or float16)."""
    C, n, m = initial_state if initial_state is not None else zero_mlstm_state(q, v)
    h, C, n, m = _Chunkwise.apply(q, k, v, i, f, mask, C, n, m, max(1, min(chunk_size, q.shape[2])), eps)
    return h, (C, n, m)


def mlstm_step(q, k, v, i, f, state, *, mask=None, eps=1e-6):
    """`mlstm_step` on the emulated kernel, forward only (its backward is the reference's)."""
    h, C, n, m = emulated_kernels().mlstm_step(q, k, v, i, f, *state, mask, eps)
    return h, (C, n, m)
