"""The peers' GPU kernels behind the calling convention of `xlstm_hf.ops`.

On CUDA devices `backend="auto"` takes them, where installed, for calls that autograd does not record
(inference, generation), until our own CUDA kernels have passed on a GPU (`choose_backend` decides;
`why_not` says which calls a peer cannot run exactly):

- `mlstm_kernels` (NX-AI; NXAI Community License, so optional, never a dependency, nothing copied): the
  TFLA Triton chunkwise kernel `chunkwise--triton_xl_chunk` for sequences, the kernel transformers'
  xLSTM runs on GPUs, and its Triton step kernel `triton` for decoding;
- `flashrnn` (NX-AI; Apache-2.0): the fused Triton sLSTM `triton_fused`, which needs no CUDA compiler.

Both are imported on first use only. Their Triton kernels use block pointers, which Triton 3.9 removed, so
they need Triton 3.8 or older (torch 2.13 comes with 3.7.1).

What the adapters map, once per call:
- mLSTM: the same gates (input pre-activation in the exponent, log forget = logsigmoid(f)), q scaled by
  Dqk^-1/2, and the same stabilised state (C, n in units of exp(m)); their m is [B, H, 1], ours [B, H].
  Padding is exact: a padded step becomes an identity step (i -> -1e30, f -> +1e30, so log f = 0), as in
  our reference, and its output is zeroed. Their sequence lengths (16, 32, 64 or multiples of 128) are
  reached by appending identity steps. Their normaliser floor exp(-m) is not capped at exp(80) as ours;
  the two differ only where m < -80, where h is below 1e-34 either way. A packed-row start (f = -1e30,
  docs/design.md 1.7) is lost in their differences of running sums of log f within a chunk (errors of
  order 1 after it), so packed rows run our ops.
- sLSTM: the same gate order (i, f, z, o) and state (h, c, n, m); flashrnn's layouts are [B, T, 4, H, D]
  for the gate inputs, [4, H, D_out, D_in] for the recurrent kernel (ours [H, D_in, 4, D_out]) and
  [4, H, D] for the bias. An empty memory (n = 0) restarts the stabiliser at the input gate in both;
  flashrnn's PyTorch backend tests n = 0 over the whole tensor, so the adapter hands it m = -1e30 there,
  which gives the per-unit restart of ours and of flashrnn's kernels. flashrnn clamps n at 1, which every
  state of these ops satisfies (n = 0 or n >= 1). It has no padding: padded calls run our ops.

No peer's backward is the gradient of our ops: mlstm_kernels' chunkwise backward leaves out the normaliser
(it differentiates h normalised per head and step, which the layers' norms would make equivalent), its step
kernel has none, and flashrnn's Triton backward gets the gradients that reach the final c, n and m wrong
(those through h are right). Calls that autograd records run our ops; the adapters refuse them.
"""

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from ..input_checks import host_reads_allowed
from .gates import MASKED_LOG_GATE, at_least_float32
from .mlstm.chunkwise import MLSTMState
from .slstm.recurrent import SLSTMState

# op -> (package, kernel that runs on GPUs)
GPU_KERNELS = {
    "mlstm_chunkwise": ("mlstm_kernels", "chunkwise--triton_xl_chunk"),
    "mlstm_step": ("mlstm_kernels", "triton"),
    "slstm": ("flashrnn", "triton_fused"),
}
LICENCES = {"mlstm_kernels": "NXAI Community License", "flashrnn": "Apache-2.0"}
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# what each peer kernel's backward lacks (the module docstring says more)
BACKWARDS = {
    "mlstm_chunkwise": "it leaves out the normaliser's gradient",
    "mlstm_step": "it has none",
    "slstm": "it gets the gradients that reach the final c, n and m wrong",
}
MIN_HEAD_DIM = 16  # tl.dot multiplies blocks of at least 16 x 16
# flashrnn's fused kernel keeps the four D x D recurrent blocks of a head on chip: at D = 256 in float32 they
# outgrow a GPU's shared memory; up to 128 is the unchecked assumption
MAX_SLSTM_HEAD_DIM = 128
FORGET_OPEN = 1e30  # a forget pre-activation whose log-sigmoid is exactly 0 (also as log(sigmoid(x)) in Triton)


@dataclass(frozen=True, eq=False)
class Call:
    """What a call asks beyond its op and device: what decides whether a peer's kernel can run it."""

    dtype: torch.dtype = torch.float32
    head_dim: int = 64  # the smallest head dimension of the inputs
    padded: bool = False  # a padding mask is given
    grad: bool = False  # autograd records the call
    option: str | None = None  # an option of ours that no peer has (bf16_rounding, packed rows), by name
    # the mLSTM forget pre-activations of a sequence: read for packed-row starts (f = -1e30), a host read made
    # only where all else lets the peer run
    forget: torch.Tensor | None = None


@cache
def _peer(module: str):
    """A peer's module, imported on first use (through importlib: a checkpoint's own code must not name packages
    it does not need, which transformers checks before loading it)."""
    return importlib.import_module(module)


def package_status(package: str) -> tuple[bool, str]:
    """(usable, what is installed or why not) for a peer package; imports it on the first call."""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False, f"{package} is not installed (pip install {package})"
    try:
        import triton
    except ImportError:
        return False, f"{package} {version} is installed, but Triton, which its GPU kernels need, is not"
    if tuple(int(part) for part in triton.__version__.split(".")[:2]) >= (3, 9):
        return False, f"{package} {version} needs Triton < 3.9 (block pointers), not {triton.__version__}"
    try:
        importlib.import_module({"mlstm_kernels": "mlstm_kernels.torch"}.get(package, package))
    except Exception as error:  # a broken install: say so, run our ops
        return False, f"{package} {version} does not import ({type(error).__name__}: {error})"
    return True, f"{package} {version} with Triton {triton.__version__}"


def why_not(op: str, call: Call | None = None) -> str | None:
    """Why no peer kernel runs `op` for `call` on a CUDA device, or None where one does."""
    if op not in GPU_KERNELS:
        return "no peer has a kernel for this op"
    package, kernel = GPU_KERNELS[op]
    usable, status = package_status(package)
    if not usable:
        return status
    limit = _limit(op, call if call is not None else Call())
    return None if limit is None else f"{kernel} of {package} {limit}"


def describe(op: str) -> str:
    """The peer kernel that runs `op`, with its package's version."""
    package, kernel = GPU_KERNELS[op]
    return f"{package_status(package)[1]}: its kernel {kernel}"


def _limit(op: str, call: Call) -> str | None:
    """What of `call` the peer kernel of `op` cannot do, or None."""
    if not host_reads_allowed() or torch.onnx.is_in_onnx_export():
        return "is neither an operator that tracing records nor checked in CUDA-graph capture (graph_safe)"
    if call.dtype not in DTYPES:
        return f"takes float32, bfloat16 or float16 inputs, not {call.dtype}"
    if call.head_dim < MIN_HEAD_DIM:
        return f"needs at least {MIN_HEAD_DIM} units per head, not {call.head_dim}"
    if call.grad:
        return f"has no exact backward ({BACKWARDS[op]}), and autograd records the call"
    if op == "slstm" and call.padded:
        return "has no padding mask"
    if call.option is not None:
        return f"has no {call.option}"
    if op == "slstm" and (call.head_dim & (call.head_dim - 1) or call.head_dim > MAX_SLSTM_HEAD_DIM):
        return f"needs a power of 2 up to {MAX_SLSTM_HEAD_DIM} units per head, not {call.head_dim}"
    if call.forget is not None and _marks_packed_starts(call.forget):
        return "has no packed rows (f = -1e30 where a sequence starts)"
    return None


def _marks_packed_starts(f: torch.Tensor) -> bool:
    """Whether forget pre-activations mark packed-sequence starts, which the chunkwise kernel loses in its
    differences of running sums (a host read: no peer runs where none may be made)."""
    return bool((f <= MASKED_LOG_GATE / 2).any())


# ---- mLSTM: mlstm_kernels -------------------------------------------------------------------------------


def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: MLSTMState | None = None,
    eps: float = 1e-6,
    kernel: str = "chunkwise--triton_xl_chunk",
) -> tuple[torch.Tensor, MLSTMState]:
    """`ops.mlstm.mlstm_chunkwise` without autograd through an mlstm_kernels chunkwise kernel (`kernel`:
    "chunkwise--triton_xl_chunk", "chunkwise--triton_limit_chunk", or "chunkwise--native_custbw", their
    PyTorch twin); same arguments and results, the chunks are the kernel's own; `f` must not mark packed-row
    starts (see the module docstring)."""
    get_mlstm_kernel = _peer("mlstm_kernels.torch").get_mlstm_kernel
    _refuse_autograd("mlstm_chunkwise", q, k, v, i, f)
    T = q.shape[2]
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    i, f = _identity_steps(i, f, None if mask is None else mask[:, None])  # [B, H, T]
    length = _kernel_length(T)
    q, k, v = (F.pad(x.to(dtype), (0, 0, 0, length - T)) for x in (q, k, v))
    i = F.pad(i, (0, length - T), value=MASKED_LOG_GATE)
    f = F.pad(f, (0, length - T), value=FORGET_OPEN)
    C0, n0, m0 = initial_state if initial_state is not None else (None, None, None)
    chunk_size = 128 if kernel == "chunkwise--triton_xl_chunk" else min(64, length)
    with torch.autocast(q.device.type, enabled=False):  # their autocast would cast the float32 states
        h, (C, n, m) = get_mlstm_kernel(kernel)(
            q, k, v, i, f, c_initial=C0, n_initial=n0, m_initial=None if m0 is None else m0[..., None],
            return_last_states=True, eps=eps, chunk_size=chunk_size, autocast_kernel_dtype=dtype,
        )
    state_dtype = torch.promote_types(dtype, torch.float32)
    C, n, m = C.to(state_dtype), n.to(state_dtype), m[..., 0].to(state_dtype)
    h = h[:, :, :T]
    if mask is not None:
        h = h.masked_fill(~mask[:, None, :, None], 0.0)
    return h.to(v.dtype), (C, n, m)


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
    kernel: str = "triton",
) -> tuple[torch.Tensor, MLSTMState]:
    """`ops.mlstm.mlstm_step` without autograd through an mlstm_kernels step kernel (`kernel`: "triton", or
    "native", its PyTorch twin); same arguments and results."""
    get_mlstm_step_kernel = _peer("mlstm_kernels.torch").get_mlstm_step_kernel
    _refuse_autograd("mlstm_step", q, k, v, i, f, *state)
    C, n, m = state
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    i, f = _identity_steps(i, f, None if mask is None else mask[:, None])  # [B, H]
    state_dtype = torch.promote_types(dtype, torch.float32)
    h, (C, n, m) = get_mlstm_step_kernel(kernel)(
        q=q.to(dtype), k=k.to(dtype), v=v.to(dtype), i=i[..., None], f=f[..., None],
        c=C.to(state_dtype), n=n.to(state_dtype), m=m[..., None].to(state_dtype), eps=eps, dtype_state=state_dtype,
    )
    if mask is not None:
        h = h.masked_fill(~mask[:, None, None], 0.0)
    return h.to(v.dtype), (C, n, m[..., 0])


def _refuse_autograd(op: str, *tensors: torch.Tensor) -> None:
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        package, kernel = GPU_KERNELS[op]
        raise RuntimeError(f"autograd records this call, but {kernel} of {package} has no exact backward "
                           f"({BACKWARDS[op]}); run it under torch.no_grad(), or the op of xlstm_hf.ops.")


def _identity_steps(i: torch.Tensor, f: torch.Tensor, real: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate pre-activations in float32 (or wider) with the steps where `real` (broadcast to i) is False made
    identity steps: i = -1e30 writes nothing, f = +1e30 forgets nothing (its log-sigmoid is exactly 0)."""
    i, f = at_least_float32(i), at_least_float32(f)
    if real is None:
        return i, f
    return i.masked_fill(~real, MASKED_LOG_GATE), f.masked_fill(~real, FORGET_OPEN)


def _kernel_length(T: int) -> int:
    """The length the TFLA kernels take (16, 32, 64, or a multiple of 128) that holds T steps."""
    if T > 64:
        return -(-T // 128) * 128
    return max(16, 1 << (T - 1).bit_length())


# ---- sLSTM: flashrnn ------------------------------------------------------------------------------------


def slstm(
    gates_x: torch.Tensor,
    recurrent_kernel: torch.Tensor,
    bias: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    initial_state: SLSTMState | None = None,
    backend: str = "triton_fused",
) -> tuple[torch.Tensor, SLSTMState]:
    """`ops.slstm.slstm_recurrent` without autograd through flashrnn (`backend`: "triton_fused", or "vanilla",
    its PyTorch twin); same arguments and results, without padding. It computes in the dtype of `gates_x`."""
    flashrnn = _peer("flashrnn").flashrnn
    _refuse_autograd("slstm", gates_x, recurrent_kernel, bias, *(initial_state or ()))
    if mask is not None:
        raise ValueError("mask: flashrnn has no padding; run padded inputs with backend='native' or 'auto'.")
    dtype = gates_x.dtype
    states = None
    if initial_state is not None:
        h, c, n, m = (s.to(dtype) for s in initial_state)
        m = m.masked_fill(n == 0, MASKED_LOG_GATE)  # the per-unit restart of an empty memory, in every backend
        states = torch.stack((h, c, n, m))[:, :, None]  # [4, B, 1, H, D]
    outputs, last = flashrnn(
        gates_x.permute(0, 2, 3, 1, 4),  # [B, T, 4, H, D]
        recurrent_kernel.to(dtype).permute(2, 0, 3, 1),  # [4, H, D_out, D_in]
        bias.to(dtype).permute(1, 0, 2),  # [4, H, D]
        states, function="slstm", backend=backend, dtype=str(dtype).removeprefix("torch."),
    )  # [4, B, T, H, D] and [4, B, 1, H, D]
    state_dtype = torch.promote_types(dtype, torch.float32)
    final_state = tuple(s.to(state_dtype) for s in last[:, :, 0].unbind(0))
    return outputs[0].transpose(1, 2), final_state
