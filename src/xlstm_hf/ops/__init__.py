"""The xLSTM recurrences behind one calling convention, and the one place that picks how each runs.

Every op takes its sequence inputs as `[B, H, T, ...]`, an optional padding `mask [B, T]` (False at
padded steps, which leave every state untouched), an optional `initial_state`, and returns
`(outputs, final_state)` with states in float32.

Backends: `"native"` is the PyTorch reference; `"cpp"` the compiled CPU kernels (`xlstm_hf/csrc`);
`"cuda"` the CUDA kernels (`xlstm_hf/csrc/cuda`); `"peers"` the GPU kernels of `mlstm_kernels` and
`flashrnn` where installed (`ops/peers.py`); `"auto"` takes a compiled kernel where one exists for the op
and device and the extension builds, on GPUs only once our CUDA kernels are validated and else the peers'
kernel where one can run the call, and the reference otherwise. `choose_backend` is the single decision;
`xlstm-hf env` prints it per op.
"""

from typing import Literal

import torch

from . import compiled
from .conv import causal_conv1d as causal_conv1d_reference
from .exportable import mlstm_chunkwise_reference, slstm_reference
from .extension import extension_has_cuda, extension_status
from .mlstm import MLSTMState, mlstm_chunkwise, mlstm_parallel, mlstm_recurrent, mlstm_step, zero_mlstm_state
from .peers import GPU_KERNELS, describe, why_not
from .peers import Call as PeerCall
from .peers import mlstm_chunkwise as peer_mlstm_chunkwise
from .peers import mlstm_step as peer_mlstm_step
from .peers import slstm as peer_slstm
from .slstm import SLSTMState, slstm_recurrent, zero_slstm_state

MLSTMForm = Literal["chunkwise", "parallel", "recurrent"]
BACKENDS = ("auto", "native", "cpp", "cuda", "peers")
OPS = ("mlstm_chunkwise", "mlstm_parallel", "mlstm_recurrent", "mlstm_step", "slstm", "causal_conv1d", "decode_step")

_MLSTM_FORMS = {"chunkwise": mlstm_chunkwise, "parallel": mlstm_parallel, "recurrent": mlstm_recurrent}
_REFERENCES = {"mlstm_step": mlstm_step, "slstm": slstm_recurrent, "causal_conv1d": causal_conv1d_reference}
_PEER_KERNELS = {"mlstm_step": peer_mlstm_step, "slstm": peer_slstm}
_COMPILED = tuple(_REFERENCES)  # each has a compiled kernel of the same name in ops.compiled
# decode_step: one token through the whole block stack, the inference fast path of XLSTMModel;
# mlstm_chunkwise: the chunkwise form (the parallel and recurrent forms stay in PyTorch)
_COMPILED_ON_CPU = (*_COMPILED, "decode_step", "mlstm_chunkwise")
_COMPILED_ON_CUDA = ("mlstm_step", "slstm", "mlstm_chunkwise")
# "auto" takes the CUDA kernels only once they have passed scripts/gpu_check.sh on a GPU; until then they
# run only where backend="cuda" asks for them, and "auto" takes the peers' kernels where installed
CUDA_KERNELS_VALIDATED = False


def choose_backend(
    op: str, device: torch.device, requested: str = "auto", call: PeerCall | None = None
) -> tuple[str, str]:
    """(backend, why) for running `op` on `device` when `requested` is asked for; `call` says what the call
    needs, which decides whether a peer's kernel can run it (None: a plain call). An explicit request
    that cannot be met raises instead of falling back."""
    if requested not in BACKENDS:
        raise ValueError(f"backend={requested!r} is unknown; use one of {BACKENDS}.")
    if requested == "native":
        return "native", "asked for"
    if requested == "peers":
        return _peer_backend(op, device, call)
    compiled_backend, kernels = {"cpu": ("cpp", _COMPILED_ON_CPU), "cuda": ("cuda", _COMPILED_ON_CUDA)}.get(
        device.type, (None, ())
    )
    if requested != "auto" and requested != compiled_backend:
        raise ValueError(f"backend={requested!r} does not run on {device.type} inputs; use 'auto' or 'native'.")
    if op not in kernels:
        return "native", f"no compiled kernel for this op on {device.type}"
    if compiled_backend == "cuda" and requested == "auto" and not CUDA_KERNELS_VALIDATED:
        return _peer_or_native(op, call, "our CUDA kernels have not run on a GPU yet (backend='cuda' opts in)")
    available, why = extension_status()
    if available and (device.type == "cpu" or extension_has_cuda()):
        return compiled_backend, f"the compiled kernels are {why}"
    if available:
        why = "built without CUDA (no GPU or no nvcc when it was built)"
    if requested != "auto":
        raise RuntimeError(f"backend={requested!r} was asked for, but the compiled kernels are unavailable: {why}.")
    if compiled_backend == "cuda":
        return _peer_or_native(op, call, f"the compiled kernels are unavailable: {why}")
    return "native", f"the compiled kernels are unavailable: {why}"


def _peer_or_native(op: str, call: PeerCall | None, why_not_ours: str) -> tuple[str, str]:
    """"auto" on a GPU where our CUDA kernels do not run: the peers' kernel where it can run the call."""
    reason = why_not(op, call)
    if reason is None:
        return "peers", f"{describe(op)}; {why_not_ours}"
    return "native", f"{why_not_ours}; {reason}"


def _peer_backend(op: str, device: torch.device, call: PeerCall | None) -> tuple[str, str]:
    """The choice for backend="peers": their kernel, our reference for ops they have none for, or an error."""
    if device.type != "cuda":
        raise ValueError(f"backend='peers' runs GPU kernels, not on {device.type} inputs; use 'auto' or 'native'.")
    if op not in GPU_KERNELS:
        return "native", "no peer has a kernel for this op"
    reason = why_not(op, call)
    if reason is not None:
        raise RuntimeError(f"backend='peers' was asked for, but {reason}; backend='auto' runs the PyTorch ops there.")
    return "peers", describe(op)


def _call(
    device: torch.device, inputs: tuple[torch.Tensor, ...], initial_state: tuple[torch.Tensor, ...] | None,
    mask: torch.Tensor | None, head_dim: int, option: str | None = None, forget: torch.Tensor | None = None,
) -> PeerCall | None:
    """What a call asks, which decides whether a peer's kernel can run it; None off GPUs, where none runs.
    `forget`: the mLSTM forget pre-activations of a sequence (see PeerCall)."""
    if device.type != "cuda":
        return None
    dtype = inputs[0].dtype
    for tensor in inputs[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    state = initial_state if initial_state is not None else ()
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *state))
    return PeerCall(dtype=dtype, head_dim=head_dim, padded=mask is not None, grad=grad, option=option,
                    forget=forget)


def _kernel(op: str, device: torch.device, requested: str, call: PeerCall | None = None):
    backend, _ = choose_backend(op, device, requested, call)
    if torch.onnx.is_in_onnx_export():  # ONNX knows the PyTorch operations the reference is made of, not ours
        backend = "native"
    if backend == "peers":
        return _PEER_KERNELS[op]
    return _REFERENCES[op] if backend == "native" else getattr(compiled, op)


def _as_one_operator() -> bool:
    """Whether torch.export records a recurrence as one operator, whatever the length (see ops/exportable.py);
    not for ONNX, which records the operations of the reference, for the length of the example."""
    return torch.compiler.is_exporting() and not torch.onnx.is_in_onnx_export()


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
    backend: str = "auto",
) -> tuple[torch.Tensor, MLSTMState]:
    """mLSTM over a sequence: q, k [B, H, T, Dqk], v [B, H, T, Dv], i, f [B, H, T] -> h [B, H, T, Dv].

    A single step (T = 1, decoding) runs the step kernel for all heads at once; longer inputs run `form`.
    `chunk_size` is the chunk of our chunkwise form; the peers' kernel (mlstm_kernels) picks its own.
    """
    call = _call(q.device, (q, k, v, i, f), initial_state, mask, min(q.shape[-1], v.shape[-1]),
                 forget=f if q.shape[2] > 1 else None)
    if q.shape[2] == 1:
        step = _kernel("mlstm_step", q.device, backend, call)
        state = initial_state if initial_state is not None else zero_mlstm_state(q, v)
        step_mask = None if mask is None else mask[:, 0]
        h, state = step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0], state, mask=step_mask, eps=eps)
        return h[:, :, None], state
    chosen, _ = choose_backend(f"mlstm_{form}", q.device, backend, call)  # a request that cannot be met raises
    if chosen == "peers":
        return peer_mlstm_chunkwise(q, k, v, i, f, mask=mask, initial_state=initial_state, eps=eps)
    kwargs = {"chunk_size": chunk_size} if form == "chunkwise" else {}
    kernel_takes_dtype = chosen == "cpp" or q.dtype in (torch.float32, torch.bfloat16, torch.float16)
    if chosen in ("cpp", "cuda") and kernel_takes_dtype and not torch.onnx.is_in_onnx_export():
        return compiled.mlstm_chunkwise(q, k, v, i, f, mask=mask, initial_state=initial_state, eps=eps, **kwargs)
    if _as_one_operator() and form == "chunkwise":
        state = initial_state if initial_state is not None else zero_mlstm_state(q, v)
        h, *state = mlstm_chunkwise_reference(q, k, v, i, f, mask, *state, chunk_size, eps)
        return h, tuple(state)
    return _MLSTM_FORMS[form](q, k, v, i, f, mask=mask, initial_state=initial_state, eps=eps, **kwargs)


def slstm(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: SLSTMState | None = None,
    backend: str = "auto",
    bf16_rounding: bool = False,
    resets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SLSTMState]:
    """sLSTM over a sequence: gates_x [B, H, T, 4, D], recurrent_kernel [H, D, 4, D], bias [H, 4, D]
    -> h [B, H, T, D]. `bf16_rounding`: the rounding of TiRex's PyTorch sLSTM (see ops/slstm/recurrent.py).
    `resets` [B, T]: True where a sequence of a packed row starts (docs/design.md 1.7)."""
    option = "bf16_rounding" if bf16_rounding else "packed rows" if resets is not None else None
    call = _call(gates_x.device, (gates_x, recurrent_kernel, bias), initial_state, mask, gates_x.shape[-1], option)
    kernel = _kernel("slstm", gates_x.device, backend, call)
    if kernel is _PEER_KERNELS["slstm"]:  # no rounding, no packed rows (the choice saw to it)
        return kernel(gates_x, recurrent_kernel, bias, mask=mask, initial_state=initial_state)
    if kernel is slstm_recurrent and _as_one_operator() and resets is None:
        state = initial_state if initial_state is not None else zero_slstm_state(gates_x)
        h, *state = slstm_reference(gates_x, recurrent_kernel, bias, mask, *state, bf16_rounding)
        return h, tuple(state)
    return kernel(gates_x, recurrent_kernel, bias, mask=mask, initial_state=initial_state, bf16_rounding=bf16_rounding,
                  resets=resets)


def causal_conv1d(
    x: torch.Tensor, history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, backend: str = "auto",
    resets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depthwise causal convolution: x [B, T, F] after `history` [B, K-1, F], weight [F, 1, K], bias [F]
    -> [B, T, F]. `resets` [B, T]: True where a sequence of a packed row starts (the reference runs those)."""
    if resets is not None:
        return causal_conv1d_reference(x, history, weight, bias, resets)
    return _kernel("causal_conv1d", x.device, backend)(x, history, weight, bias)


__all__ = [
    "BACKENDS", "OPS", "MLSTMForm", "MLSTMState", "SLSTMState", "causal_conv1d", "choose_backend", "mlstm", "slstm",
]
