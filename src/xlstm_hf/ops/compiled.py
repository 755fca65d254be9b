"""The Python side of the compiled operators `torch.ops.xlstm_hf.*`: fake (meta) kernels for
`torch.compile`, autograd formulas, and wrappers with the calling convention of the PyTorch reference.
Registered once, by `extension.build_extension`, after the library is loaded. The same wrappers serve
the CPU and CUDA kernels: the dispatcher picks the kernel by the device of the inputs."""

import torch

from .gates import at_least_float32
from .mlstm.chunkwise import MLSTMState, zero_mlstm_state
from .mlstm.recurrent import mlstm_step as mlstm_step_reference
from .slstm.recurrent import SLSTMState, round_to_bfloat16, slstm_recurrent


def slstm(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: SLSTMState | None = None,
    bf16_rounding: bool = False,
    resets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SLSTMState]:
    """`slstm_recurrent` as one fused kernel: same arguments and results. `bf16_rounding` has a CPU kernel
    only; on other devices it runs the reference."""
    if bf16_rounding and gates_x.device.type != "cpu":
        return slstm_recurrent(gates_x, recurrent_kernel, bias, mask=mask, initial_state=initial_state,
                               bf16_rounding=bf16_rounding, resets=resets)
    if resets is not None:  # the kind of every step, as the CPU kernel reads it: 0 padded, 1 real, 2 a start
        real = mask if mask is not None else torch.ones_like(resets)
        mask = real.to(torch.uint8) + (resets & real).to(torch.uint8)
    gx = at_least_float32(gates_x)
    B, H, _, _, D = gx.shape
    if initial_state is None:
        initial = gx.new_zeros(4, B, H, D)
    else:
        initial = torch.stack([s.to(gx.dtype) for s in initial_state])
    kernel, forward = recurrent_kernel.to(gx.dtype), torch.ops.xlstm_hf.slstm_forward
    if bf16_rounding:  # the kernel rounds gates_x and the rest (csrc/slstm_cpu.cpp)
        kernel, initial = round_to_bfloat16(kernel), round_to_bfloat16(initial)
        forward = torch.ops.xlstm_hf.slstm_forward_bf16_rounding
    h, final_states, _, _ = forward(gx, kernel, bias.to(gx.dtype), mask, initial)
    return h.to(gates_x.dtype), tuple(final_states.unbind(0))


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
    """`mlstm_chunkwise` of the reference as the compiled forward and backward kernels (csrc/mlstm_chunkwise_cpu.cpp,
    csrc/cuda/mlstm_chunkwise*.cu): same arguments and results. Chunks hold at most 64 steps here (the forms agree
    for any chunk size)."""
    C, n, m = initial_state if initial_state is not None else zero_mlstm_state(q, v)
    L = min(chunk_size, 64)
    if q.is_cuda:  # the CPU kernel shortens a chunk longer than the sequence itself (no guard on T when exported)
        L = max(1, min(L, q.shape[2]))
    h, C, n, m = torch.ops.xlstm_hf.mlstm_chunkwise_forward(q, k, v.to(q.dtype), i, f, mask, C, n, m, L, eps)
    return h.to(v.dtype), (C, n, m)


def causal_conv1d(x: torch.Tensor, history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The causal convolution of the reference (ops/conv.py) as one kernel: same arguments and result."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    inputs = (t.to(dtype) for t in (x, history, weight, bias))
    return torch.ops.xlstm_hf.causal_conv1d(*inputs).to(torch.promote_types(x.dtype, weight.dtype))


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
    """`mlstm_step` of the reference as one kernel for all heads: same arguments and results."""
    dtype = torch.promote_types(v.dtype, torch.float32)
    inputs = (x.to(dtype) for x in (q, k, v, i, f, *state))
    h, C, n, m = torch.ops.xlstm_hf.mlstm_step(*inputs, mask, eps)
    return h.to(v.dtype), (C, n, m)


# ---- sLSTM: fake kernels and autograd -----------------------------------------------------------------


def _slstm_forward_fake(gates_x, recurrent_kernel, bias, mask, initial_states):
    B, H, T, _, D = gates_x.shape
    h = gates_x.new_empty(B, T, H, D).permute(0, 2, 1, 3)
    return h, torch.empty_like(initial_states), gates_x.new_empty(4, B, H, T + 1, D), gates_x.new_empty(B, H, T, 4, D)


def _slstm_backward_fake(grad_h, grad_final_states, recurrent_kernel, mask, states, raw):
    B, H, T, _, D = raw.shape
    grad_gates_x = raw.new_empty(H, B, T, 4, D).transpose(0, 1)  # head-major, as the kernel writes it
    return grad_gates_x, torch.empty_like(recurrent_kernel), raw.new_empty(H, 4, D), torch.empty_like(grad_final_states)


def _slstm_setup_context(ctx, inputs, output):
    _, recurrent_kernel, _, mask, _ = inputs
    _, _, states, raw = output
    ctx.mark_non_differentiable(states, raw)
    ctx.set_materialize_grads(False)  # no zero gradients for states and raw, which are as large as the inputs
    ctx.save_for_backward(recurrent_kernel, mask, states, raw)


def _slstm_backward(ctx, grad_h, grad_final_states, _grad_states, _grad_raw):
    recurrent_kernel, mask, states, raw = ctx.saved_tensors
    B, H, T, _, D = raw.shape
    grad_h = grad_h if grad_h is not None else raw.new_zeros(B, H, T, D)
    if grad_final_states is None:
        grad_final_states = raw.new_zeros(4, B, H, D)
    grad_gates_x, grad_kernel, grad_bias, grad_initial = torch.ops.xlstm_hf.slstm_backward(
        grad_h, grad_final_states, recurrent_kernel, mask, states, raw
    )
    return grad_gates_x, grad_kernel, grad_bias, None, grad_initial


def _state_dtype(q: torch.Tensor) -> torch.dtype:
    """The dtype of the chunkwise kernels' arithmetic and state: float64 for float64 inputs, else float32."""
    return torch.promote_types(q.dtype, torch.float32)


def _mlstm_chunkwise_forward_fake(q, k, v, i, f, mask, C, n, m, chunk_size, eps):
    floats = dict(dtype=_state_dtype(q))
    return v.new_empty(v.shape), C.new_empty(C.shape, **floats), n.new_empty(n.shape, **floats), m.new_empty(
        m.shape, **floats
    )


def _mlstm_chunkwise_setup_context(ctx, inputs, output):
    *tensors, chunk_size, eps = inputs
    ctx.save_for_backward(*tensors)
    ctx.chunk_size, ctx.eps = chunk_size, eps
    ctx.set_materialize_grads(False)


def _mlstm_chunkwise_backward(ctx, grad_h, grad_C, grad_n, grad_m):
    q, k, v, i, f, mask, C, n, m = ctx.saved_tensors
    grad_h, grad_C, grad_n, grad_m = (
        grad if grad is not None else torch.zeros_like(x) for grad, x in zip((grad_h, grad_C, grad_n, grad_m),
                                                                               (v, C, n, m))
    )
    state_grads = (grad.to(_state_dtype(q)) for grad in (grad_C, grad_n, grad_m))
    dq, dk, dv, di, df, dC, dn, dm = torch.ops.xlstm_hf.mlstm_chunkwise_backward(
        grad_h, *state_grads, q, k, v, i, f, mask, C, n, m, ctx.chunk_size, ctx.eps
    )
    return dq, dk, dv, di, df, None, dC, dn, dm, None, None


def _mlstm_chunkwise_backward_fake(grad_h, grad_C, grad_n, grad_m, q, k, v, i, f, mask, C, n, m, chunk_size, eps):
    return tuple(torch.empty_like(x) for x in (q, k, v, i, f, C, n, m))


# ---- causal convolution: fake kernels and autograd -------------------------------------------------------


def _causal_conv1d_fake(x, history, weight, bias):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _causal_conv1d_backward_fake(grad_y, x, history, weight):
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(history, memory_format=torch.contiguous_format), torch.empty_like(weight),
            weight.new_empty(weight.shape[0]))


def _causal_conv1d_setup_context(ctx, inputs, output):
    x, history, weight, _ = inputs
    ctx.save_for_backward(x, history, weight)


def _causal_conv1d_backward(ctx, grad_y):
    return torch.ops.xlstm_hf.causal_conv1d_backward(grad_y, *ctx.saved_tensors)


# ---- mLSTM step: fake kernel and autograd (through the reference, which computes the same function) ----


def _mlstm_step_fake(q, k, v, i, f, C, n, m, mask, eps):
    return v.new_empty(v.shape), torch.empty_like(C), torch.empty_like(n), torch.empty_like(m)


def _mlstm_step_setup_context(ctx, inputs, output):
    *tensors, mask, eps = inputs
    ctx.save_for_backward(*tensors, mask)
    ctx.eps = eps


def _mlstm_step_backward(ctx, grad_h, grad_C, grad_n, grad_m):
    *tensors, mask = ctx.saved_tensors

    def reference(q, k, v, i, f, C, n, m):
        h, state = mlstm_step_reference(q, k, v, i, f, (C, n, m), mask=mask, eps=ctx.eps)
        return (h, *state)

    outputs, vjp = torch.func.vjp(reference, *tensors)
    grads = tuple(
        grad if grad is not None else torch.zeros_like(output)
        for grad, output in zip((grad_h, grad_C, grad_n, grad_m), outputs)
    )
    return (*vjp(grads), None, None)


def _decode_step_fake(hidden, params, state, layout, floats, ints):
    return torch.empty_like(hidden), [torch.empty_like(tensor) for tensor in state]


def register_python_parts() -> None:
    """Fake kernels and autograd of the operators; call once after loading the library."""
    for forward in ("slstm_forward", "slstm_forward_bf16_rounding"):  # one backward: the rounding is straight-through
        torch.library.register_fake(f"xlstm_hf::{forward}", _slstm_forward_fake)
        torch.library.register_autograd(f"xlstm_hf::{forward}", _slstm_backward, setup_context=_slstm_setup_context)
    torch.library.register_fake("xlstm_hf::slstm_backward", _slstm_backward_fake)
    torch.library.register_fake("xlstm_hf::mlstm_chunkwise_forward", _mlstm_chunkwise_forward_fake)
    torch.library.register_fake("xlstm_hf::mlstm_chunkwise_backward", _mlstm_chunkwise_backward_fake)
    torch.library.register_autograd(
        "xlstm_hf::mlstm_chunkwise_forward", _mlstm_chunkwise_backward, setup_context=_mlstm_chunkwise_setup_context
    )
    torch.library.register_fake("xlstm_hf::causal_conv1d", _causal_conv1d_fake)
    torch.library.register_fake("xlstm_hf::causal_conv1d_backward", _causal_conv1d_backward_fake)
    torch.library.register_autograd(
        "xlstm_hf::causal_conv1d", _causal_conv1d_backward, setup_context=_causal_conv1d_setup_context
    )
    torch.library.register_fake("xlstm_hf::mlstm_step", _mlstm_step_fake)
    torch.library.register_autograd(
        "xlstm_hf::mlstm_step", _mlstm_step_backward, setup_context=_mlstm_step_setup_context
    )
    torch.library.register_fake("xlstm_hf::decode_step", _decode_step_fake)
