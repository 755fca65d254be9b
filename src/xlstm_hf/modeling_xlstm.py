"""PyTorch xLSTM for transformers: layers, blocks, the recurrent cache, the base model and the LM head.

Both block families of docs/design.md 1.6 are built from the same parts: a block is
`x + mixer(norm(x))`, then `x + ffn(ffn_norm(x))` where the block has a feed-forward, and the mixer is
one of `MLSTMLayer` (NeurIPS), `MLSTMLargeLayer` (xLSTM-7B) or `SLSTMLayer`. The recurrences live in
`xlstm_hf.ops`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.distributed.parallel_utils import replace_layer_number_by_wildcard
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import ModelOutput, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg

from .cache import BlockState, LayerState, XLSTMCache, check_cache
from .checkpoint_mapping import is_transformers_xlstm_checkpoint, load_transformers_xlstm_checkpoint
from .checkpointing import HUB_KWARGS, CheckpointMixin
from .configuration_xlstm import XLSTMConfig
from .decoding import ACTIVATIONS, Activation, BlockKind, CompiledDecoding
from .generation import XLSTMGenerationMixin
from .input_checks import (
    LOSS_KWARGS,
    check_attention_mask,
    check_class_labels,
    check_embeddings,
    check_every_row_has_a_real_step,
    check_finite,
    check_sequence_labels,
    check_token_ids,
    check_unused_kwargs,
    host_reads_allowed,
    input_rows_and_steps,
)
from .inputs import embed_past_values, keep_positions, padding_mask, real_step_bounds, split_packing_kwargs
from .ops import causal_conv1d, mlstm, slstm
from .ops.gates import MASKED_LOG_GATE
from .packing import PACKING_KWARGS, sequence_ends, sequence_starts

logger = logging.get_logger(__name__)


def soft_cap(x: torch.Tensor, cap: float) -> torch.Tensor:
    """`cap * tanh(x / cap)`; a cap of 0 leaves `x` as it is."""
    return cap * torch.tanh(x / cap) if cap else x


# ---------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------


class XLSTMRMSNorm(nn.Module):
    """RMSNorm with the reduction in float32 and an optional bias (the xLSTM-Large norm)."""

    def __init__(self, hidden_size: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype) * self.weight
        return x + self.bias if self.bias is not None else x


class MultiHeadNorm(nn.Module):
    """LayerNorm of every head's output on its own (float32 reduction), then one weight over all heads."""

    def __init__(self, num_heads: int, head_dim: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads * head_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads * head_dim)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: [B, H, T, D] -> [B, T, H * D]."""
        h = h.transpose(1, 2)  # [B, T, H, D]: free where the kernel wrote h in this layout
        normed = F.layer_norm(h.float(), h.shape[-1:], eps=self.eps).to(h.dtype).flatten(2) * self.weight
        return normed + self.bias if self.bias is not None else normed


class OutputProjection(nn.Linear):
    """A linear map back into the residual stream (initialised small, scaled by depth)."""


class GateProjection(nn.Linear):
    """The mLSTM input- and forget-gate pre-activations, one of each per head (`[..., 2 * heads]`)."""


class HeadwiseLinear(nn.Module):
    """Block-diagonal linear map: the features are cut into `num_blocks` groups mapped independently.

    `weight` is [num_blocks, out_per_block, in_per_block], as in the official code.
    """

    def __init__(self, features: int, num_blocks: int, bias: bool = False):
        super().__init__()
        self.num_blocks = num_blocks
        block = features // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, block, block))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("...hd,hod->...ho", x.unflatten(-1, (self.num_blocks, -1)), self.weight).flatten(-2)
        return y + self.bias if self.bias is not None else y


def headwise_pair(x: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Two HeadwiseLinear maps of one input in one matrix product per head: x [B, T, H * D] and weights
    [H, D, D] -> [H, B, T, 2D] (head-major)."""
    weight = torch.cat([first, second], dim=1)  # [H, 2D, D]
    return torch.einsum("bthd,hod->hbto", x.unflatten(-1, (weight.shape[0], -1)), weight)


class CausalConv1d(nn.Module):
    """Depthwise causal convolution over time that carries its last `kernel_size - 1` inputs as state.

    Padded steps (mask False) are skipped: each real step reads the real steps before it and the carried
    history, which holds the last real inputs. So a padded step leaves the state untouched, and padding
    anywhere in a row (left padding: where zeros precede a sequence anyway) changes nothing at its real
    steps, whether the row comes whole or in pieces. Outputs at padded steps are don't-care.
    """

    def __init__(self, features: int, kernel_size: int, backend: str = "auto"):
        super().__init__()
        self.kernel_size, self.backend = kernel_size, backend
        self.weight = nn.Parameter(torch.empty(features, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(features))

    def forward(
        self, x: torch.Tensor, history: torch.Tensor | None = None, mask: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, F]; history: [B, K-1, F]; mask: [B, T]; resets: [B, T], True where a packed sequence starts
        (no tap reads across it) -> (y [B, T, F], new history [B, K-1, F])."""
        B, _, features = x.shape
        if history is None:
            history = x.new_zeros(B, self.kernel_size - 1, features)
        history = history.to(x.dtype)
        if mask is None:
            y = causal_conv1d(x, history, self.weight, self.bias, backend=self.backend, resets=resets)
            return y, self._last_real_inputs(x, history, mask, resets)
        x = x.masked_fill(~mask[..., None], 0.0)
        order = real_steps_first(mask)  # [B, T]
        in_order = None if resets is None else resets.gather(1, order)
        order = order[..., None].expand(-1, -1, features)  # [B, T, F]
        y = causal_conv1d(x.gather(1, order), history, self.weight, self.bias, backend=self.backend, resets=in_order)
        return torch.empty_like(y).scatter(1, order, y), self._last_real_inputs(x, history, mask, resets)

    def _last_real_inputs(
        self, x: torch.Tensor, history: torch.Tensor, mask: torch.Tensor | None, resets: torch.Tensor | None
    ) -> torch.Tensor:
        """The last K-1 real inputs of the history and x, zeros in place of those before the last sequence's
        start: the history the next call continues from."""
        keep = self.kernel_size - 1
        if mask is None and resets is None and x.shape[1] >= keep:
            return x[:, x.shape[1] - keep :]
        window = torch.cat([history, x], dim=1)  # [B, K-1+T, F]
        is_real = torch.cat([x.new_ones(x.shape[0], keep, dtype=torch.bool),
                             mask if mask is not None else x.new_ones(x.shape[:2], dtype=torch.bool)], dim=1)
        positions = real_steps_first(~is_real)[:, is_real.shape[1] - keep :]  # the real ones last, in order
        last = window.gather(1, positions[..., None].expand(-1, -1, window.shape[-1]))
        if resets is None:
            return last
        sequence = torch.cat([resets.new_zeros(resets.shape[0], keep, dtype=torch.long), resets.long().cumsum(1)], 1)
        in_last_sequence = sequence.gather(1, positions) == sequence[:, -1:]
        return last.masked_fill(~in_last_sequence[..., None], 0.0)


def real_steps_first(mask: torch.Tensor) -> torch.Tensor:
    """mask [B, T] bool -> [B, T] indices that move each row's True steps to its front, in order, and its False
    steps after them, in order (a stable argsort of ~mask, from sums: ONNX has no stable sort)."""
    real = mask.long()
    before = torch.where(mask, real.cumsum(1), real.sum(1, keepdim=True) + (1 - real).cumsum(1)) - 1  # new places
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(before)
    return torch.empty_like(before).scatter(1, before, steps)


class GatedFeedForward(nn.Module):
    """`down(act(gate) * up)` with `gate, up` from one up-projection (GELU: NeurIPS, SiLU: SwiGLU of 7B)."""

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.proj_up = nn.Linear(config.hidden_size, 2 * config.ffn_size, bias=config.use_bias)
        self.proj_down = OutputProjection(config.ffn_size, config.hidden_size, bias=config.use_bias)
        self.act = ACT2FN[config.ffn_act]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.proj_up(x).chunk(2, dim=-1)
        return self.dropout(self.proj_down(self.act(gate) * up))


def make_norm(config: XLSTMConfig) -> nn.Module:
    """A block or output norm of kind `config.norm_type`; as in the official code, only Large blocks give
    their norms a bias (with `use_bias`)."""
    bias = config.use_bias and config.block_family == "large"
    if config.norm_type == "rmsnorm":
        return XLSTMRMSNorm(config.hidden_size, config.norm_eps, bias=bias)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=bias)


def forget_at_starts(
    i: torch.Tensor, f: torch.Tensor, resets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mLSTM gates i, f [B, H, T] with the memory forgotten entirely where a packed sequence starts (resets
    [B, T]): log f = -1e30 there (docs/design.md 1.7), which every form and kernel of the mLSTM computes as a
    fresh start."""
    return i, f if resets is None else f.masked_fill(resets[:, None, :], MASKED_LOG_GATE)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, T, H * D] -> [B, H, T, D]."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------
# Mixers: the recurrent layer of a block
# ---------------------------------------------------------------------------------------------------


class MLSTMLayer(nn.Module):
    """NeurIPS mLSTM layer ("pre up-projection"): up-projection, causal conv, block-diagonal q/k/v,
    exponential gating over the matrix memory, per-head norm, learnable skip, SiLU output gate."""

    decode_kind = BlockKind.NEURIPS_MLSTM  # for the compiled one-token step (decoding.py), which reads these:
    DECODE_PARAMETERS = (
        "proj_up.weight", "proj_up.bias", "conv.weight", "conv.bias", "q_proj.weight", "q_proj.bias", "k_proj.weight",
        "k_proj.bias", "v_proj.weight", "v_proj.bias", "gate_proj.weight", "gate_proj.bias", "norm.weight", "skip",
        "proj_down.weight", "proj_down.bias",
    )

    def __init__(self, config: XLSTMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_heads
        self.chunk_size, self.eps, self.gate_soft_cap = config.chunk_size, config.mlstm_eps, config.gate_soft_cap
        self.backend = config.backend
        inner = config.mlstm_inner_size
        num_blocks = inner // config.qkv_proj_blocksize
        self.proj_up = nn.Linear(config.hidden_size, 2 * inner, bias=config.use_bias)
        self.conv = CausalConv1d(inner, config.conv_kernel_size, config.backend) if config.conv_kernel_size else None
        self.q_proj = HeadwiseLinear(inner, num_blocks, bias=config.use_bias)
        self.k_proj = HeadwiseLinear(inner, num_blocks, bias=config.use_bias)
        self.v_proj = HeadwiseLinear(inner, num_blocks, bias=config.use_bias)
        self.gate_proj = GateProjection(3 * inner, 2 * config.num_heads)
        self.norm = MultiHeadNorm(config.num_heads, inner // config.num_heads, config.norm_eps)
        self.skip = nn.Parameter(torch.ones(inner))
        self.proj_down = OutputProjection(inner, config.hidden_size, bias=config.use_bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: LayerState | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LayerState]:
        """x: [B, T, hidden] -> ([B, T, hidden], new state)."""
        conv_history, cell_state = state if state is not None else (None, None)
        x_mlstm, z = self.proj_up(x).chunk(2, dim=-1)  # [B, T, inner] each
        if self.conv is not None:
            x_conv, conv_history = self.conv(x_mlstm, conv_history, mask, resets)
        else:
            x_conv = x_mlstm
        x_conv = F.silu(x_conv)
        q, k, v = self.q_proj(x_conv), self.k_proj(x_conv), self.v_proj(x_mlstm)
        gates = soft_cap(self.gate_proj(torch.cat([q, k, v], dim=-1)), self.gate_soft_cap)
        i, f = forget_at_starts(*gates.transpose(1, 2).chunk(2, dim=1), resets)  # [B, H, T] each
        h, cell_state = mlstm(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads), split_heads(v, self.num_heads),
            i, f, mask=mask, initial_state=cell_state, chunk_size=self.chunk_size, eps=self.eps,
            backend=self.backend,
        )
        h = self.norm(h) + self.skip * x_conv  # [B, T, inner]
        y = self.dropout(self.proj_down(h * F.silu(z)))
        return y, (conv_history, cell_state)



class MLSTMLargeLayer(nn.Module):
    """xLSTM-Large (7B) mLSTM layer: linear q/k/v and output gate, soft-capped gates, per-head norm
    times a sigmoid output gate, output projection."""

    decode_kind = BlockKind.LARGE_MLSTM
    DECODE_PARAMETERS = (
        "qkvo_proj.weight", "qkvo_proj.bias", "gate_proj.weight", "gate_proj.bias", "norm.weight", "norm.bias",
        "out_proj.weight", "out_proj.bias",
    )

    def __init__(self, config: XLSTMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_heads
        self.chunk_size, self.eps, self.gate_soft_cap = config.chunk_size, config.mlstm_eps, config.gate_soft_cap
        self.backend = config.backend
        qk, v = config.mlstm_qk_size, config.mlstm_v_size
        self.split_sizes = (qk, qk, v, v)
        self.qkvo_proj = nn.Linear(config.hidden_size, 2 * qk + 2 * v, bias=config.use_bias)
        self.gate_proj = GateProjection(config.hidden_size, 2 * config.num_heads)
        self.norm = MultiHeadNorm(config.num_heads, v // config.num_heads, config.norm_eps, bias=config.use_bias)
        self.out_proj = OutputProjection(v, config.hidden_size, bias=config.use_bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: LayerState | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LayerState]:
        """x: [B, T, hidden] -> ([B, T, hidden], new state)."""
        cell_state = state[1] if state is not None else None
        q, k, v, o = self.qkvo_proj(x).split(self.split_sizes, dim=-1)
        gates = soft_cap(self.gate_proj(x), self.gate_soft_cap)
        i, f = forget_at_starts(*gates.transpose(1, 2).chunk(2, dim=1), resets)  # [B, H, T] each
        h, cell_state = mlstm(
            split_heads(q, self.num_heads), split_heads(k, self.num_heads), split_heads(v, self.num_heads),
            i, f, mask=mask, initial_state=cell_state, chunk_size=self.chunk_size, eps=self.eps,
            backend=self.backend,
        )
        y = self.out_proj(torch.sigmoid(o) * self.norm(h))
        return y, (None, cell_state)



class SLSTMLayer(nn.Module):
    """sLSTM layer: causal conv feeding the input and forget gates, block-diagonal gate projections,
    the scalar-memory cell with a per-head recurrent matrix, per-head norm."""

    decode_kind = BlockKind.SLSTM
    DECODE_PARAMETERS = (
        "conv.weight", "conv.bias", "igate.weight", "fgate.weight", "zgate.weight", "ogate.weight", "recurrent_kernel",
        "bias", "norm.weight",
    )

    def __init__(self, config: XLSTMConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.slstm_num_heads
        self.backend = config.backend
        hidden, head_dim = config.hidden_size, config.hidden_size // config.slstm_num_heads
        kernel = config.slstm_conv_kernel_size
        self.conv = CausalConv1d(hidden, kernel, config.backend) if kernel else None
        self.igate = HeadwiseLinear(hidden, self.num_heads)
        self.fgate = HeadwiseLinear(hidden, self.num_heads)
        self.zgate = HeadwiseLinear(hidden, self.num_heads)
        self.ogate = HeadwiseLinear(hidden, self.num_heads)
        self.recurrent_kernel = nn.Parameter(torch.empty(self.num_heads, head_dim, 4, head_dim))
        self.bias = nn.Parameter(torch.empty(self.num_heads, 4, head_dim))  # gates i, f, z, o
        self.dropout = nn.Dropout(config.dropout)
        self.norm = MultiHeadNorm(self.num_heads, head_dim, config.slstm_norm_eps)
        self.bf16_rounding = config.slstm_bf16_rounding

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, state: LayerState | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LayerState]:
        """x: [B, T, hidden] -> ([B, T, hidden], new state)."""
        conv_history, cell_state = state if state is not None else (None, None)
        if self.conv is not None:
            x_conv, conv_history = self.conv(x, conv_history, mask, resets)
            x_conv = F.silu(x_conv)
        else:
            x_conv = x
        h, cell_state = slstm(
            self._gate_inputs(x_conv, x), self.recurrent_kernel, self.bias, mask=mask, initial_state=cell_state,
            backend=self.backend, bf16_rounding=self.bf16_rounding, resets=resets,
        )
        return self.norm(self.dropout(h)), (conv_history, cell_state)

    def _gate_inputs(self, x_conv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The input parts of the gates through the headwise projections (whose weights it reads), i and f
        from `x_conv`, z and o from `x` ([B, T, hidden] each): [B, H, T, 4, D], head-major in memory, the
        layout in which the kernels return its gradient."""
        gates_x = torch.cat([
            headwise_pair(x_conv, self.igate.weight, self.fgate.weight),
            headwise_pair(x, self.zgate.weight, self.ogate.weight),
        ], dim=-1)  # [H, B, T, 4D]
        return gates_x.unflatten(-1, (4, -1)).transpose(0, 1)



MIXERS = {("neurips", "mlstm"): MLSTMLayer, ("large", "mlstm"): MLSTMLargeLayer}


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder states (queries) over the encoder outputs (keys, values),
    masked by the source padding. The keys and values of a source are computed once and carried in the
    decoder's cache."""

    def __init__(self, config: XLSTMConfig):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(hidden, hidden, bias=config.use_bias)
        self.kv_proj = nn.Linear(hidden, 2 * hidden, bias=config.use_bias)
        self.out_proj = OutputProjection(hidden, hidden, bias=config.use_bias)

    def forward(
        self,
        x: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_mask: torch.Tensor | None,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: [B, T, hidden]; encoder_hidden_states: [B, S, hidden]; encoder_mask: [B, S] bool
        -> ([B, T, hidden], (keys, values) [B, H, S, D] each)."""
        if keys_values is None:
            keys, values = self.kv_proj(encoder_hidden_states).chunk(2, dim=-1)
            keys_values = (split_heads(keys, self.num_heads), split_heads(values, self.num_heads))
        keys, values = keys_values
        queries = split_heads(self.q_proj(x), self.num_heads)
        attn_mask = None if encoder_mask is None else encoder_mask[:, None, None, :]
        dropout = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask, dropout_p=dropout)
        return self.out_proj(attended.transpose(1, 2).flatten(2)), keys_values


def reverse_time(x: torch.Tensor | None) -> torch.Tensor | None:
    """The sequence [B, T, ...] read backwards."""
    return None if x is None else x.flip(1)


class XLSTMBlock(GradientCheckpointingLayer):
    """`x + mixer(norm(x))` (plus the same over the reversed sequence in an encoder), then
    `x + cross_attention(cross_norm(x), encoder)` in a decoder, then `x + ffn(ffn_norm(x))` where the block
    has a feed-forward. Its state is `(mixer state, cross-attention keys and values)`."""

    def __init__(self, config: XLSTMConfig, layer_idx: int):
        super().__init__()
        layer_type = config.layer_types[layer_idx]
        mixer_class = MIXERS.get((config.block_family, layer_type), SLSTMLayer)
        self.norm = make_norm(config)
        self.mixer = mixer_class(config, layer_idx)
        self.mixer_reverse = mixer_class(config, layer_idx) if config.bidirectional else None
        self.cross_norm = make_norm(config) if config.add_cross_attention else None
        self.cross_attention = CrossAttention(config) if config.add_cross_attention else None
        has_ffn = config.ffn_size > 0 and (layer_type == "slstm" or config.block_family == "large")
        self.ffn_norm = make_norm(config) if has_ffn else None
        self.ffn = GatedFeedForward(config) if has_ffn else None
        # what the compiled one-token step (decoding.py) knows of this block and reads
        self.decode_kind_supported = not (config.bidirectional or config.add_cross_attention) and (
            not has_ffn or config.ffn_act in ACTIVATIONS
        )
        self.decode_activation = ACTIVATIONS.get(config.ffn_act, Activation.NONE) if has_ffn else Activation.NONE
        self.DECODE_PARAMETERS = (
            "norm.weight", "norm.bias", *(f"mixer.{name}" for name in mixer_class.DECODE_PARAMETERS),
            *(("ffn_norm.weight", "ffn_norm.bias", "ffn.proj_up.weight", "ffn.proj_up.bias", "ffn.proj_down.weight",
               "ffn.proj_down.bias") if has_ffn else ()),
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        state: BlockState | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, BlockState]:
        """`resets` [B, T]: True where a packed sequence starts (docs/design.md 1.7)."""
        mixer_state, cross_keys_values = state if state is not None else (None, None)
        normed = self.norm(hidden_states)
        mixed, mixer_state = self.mixer(normed, mask=mask, state=mixer_state, resets=resets)
        if self.mixer_reverse is not None:
            ends = None if resets is None else sequence_ends(resets, mask)  # backwards, a sequence starts there
            mixed_reverse, _ = self.mixer_reverse(reverse_time(normed), mask=reverse_time(mask),
                                                  resets=reverse_time(ends))
            mixed = mixed + reverse_time(mixed_reverse)
        hidden_states = hidden_states + mixed
        if self.cross_attention is not None:
            attended, cross_keys_values = self.cross_attention(
                self.cross_norm(hidden_states), encoder_hidden_states, encoder_mask, cross_keys_values
            )
            hidden_states = hidden_states + attended
        if self.ffn is not None:
            hidden_states = hidden_states + self.ffn(self.ffn_norm(hidden_states))
        return hidden_states, (mixer_state, cross_keys_values)


@dataclass
class XLSTMModelOutput(ModelOutput):
    """
    last_hidden_state: [B, T, hidden] output of the last block (after the out norm).
    cache: the recurrent state after the input, to continue from.
    hidden_states: the input of every block and the final output, when asked for.
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: XLSTMCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XLSTMCausalLMOutput(ModelOutput):
    """
    loss: next-token cross-entropy, when `labels` are given.
    logits: [B, T, vocab] scores of the next token.
    cache: the recurrent state after the input, to continue from.
    hidden_states: the input of every block and the final output, when asked for.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: XLSTMCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------


class XLSTMPreTrainedModel(CheckpointMixin, PreTrainedModel):
    config_class = XLSTMConfig
    config: XLSTMConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    _no_split_modules = ["XLSTMBlock"]
    supports_gradient_checkpointing = True
    _is_stateful = True

    def init_parallel_plans(self) -> None:
        """transformers' parallel plans, less the FSDP rules for modules this model does not have (the
        embedding of a model without vocabulary; the base model's rules at the top of the seq2seq model, whose
        encoder and decoder bring their own)."""
        super().init_parallel_plans()
        names = {replace_layer_number_by_wildcard(name) for name, _ in self.named_modules()}
        self._fsdp_plan = {rule: style for rule, style in self._fsdp_plan.items() if rule in names}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """The official initialisation (docs/design.md 1.6), decided by the module that owns each parameter:
        small init for input maps, depth-scaled (Wang) init for maps into the residual stream."""
        d = self.config.hidden_size
        if isinstance(module, GateProjection):
            self._init_mlstm_gates(module)
        elif isinstance(module, (nn.Linear, nn.Embedding, HeadwiseLinear)):
            is_output = isinstance(module, OutputProjection)
            std = 2 / self.config.num_hidden_layers / math.sqrt(d) if is_output else math.sqrt(2 / (5 * d))
            init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, XLSTMRMSNorm, MultiHeadNorm)):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, CausalConv1d):
            bound = 1 / math.sqrt(module.kernel_size)  # PyTorch's default Conv1d init
            init.uniform_(module.weight, -bound, bound)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, MLSTMLayer):
            init.ones_(module.skip)
        elif isinstance(module, SLSTMLayer):
            init.zeros_(module.recurrent_kernel)
            init.copy_(module.bias, self._slstm_bias(module))

    def _init_mlstm_gates(self, gate_proj: GateProjection):
        """Gate weights 0; forget bias linspace(3, 6) over heads; input bias N(0, 0.1), or -10 (Large)."""
        num_heads = gate_proj.out_features // 2
        init.zeros_(gate_proj.weight)
        forget_bias = torch.linspace(3.0, 6.0, num_heads)
        if self.config.block_family == "large":
            input_bias = torch.full((num_heads,), -10.0)
        else:
            input_bias = torch.randn(num_heads) * 0.1
        init.copy_(gate_proj.bias, torch.cat([input_bias, forget_bias]).to(gate_proj.bias))

    def _slstm_bias(self, layer: "SLSTMLayer") -> torch.Tensor:
        """Forget bias by the official block-dependent power law (about +5 to -7 over the units of a head),
        other gates 0."""
        num_heads, _, head_dim = layer.bias.shape
        depth = layer.layer_idx / (self.config.num_hidden_layers - 1) if self.config.num_hidden_layers > 1 else 0.0
        units = torch.arange(head_dim) / max(head_dim - 1, 1)
        forget = -(-5.0 + 12.0 * units ** (0.3 + 1.3 * depth))
        bias = torch.zeros(num_heads, 4, head_dim)
        bias[:, 1] = forget
        return bias.to(layer.bias)


class XLSTMModel(CompiledDecoding, XLSTMPreTrainedModel):
    """The xLSTM block stack with token embedding and out norm; returns hidden states and the cache."""

    # the modules whose parameters the compiled one-token step reads directly
    PLAIN_TYPES = {
        XLSTMBlock, MLSTMLayer, MLSTMLargeLayer, SLSTMLayer, GatedFeedForward, nn.Linear, OutputProjection,
        GateProjection, HeadwiseLinear, CausalConv1d, nn.LayerNorm, XLSTMRMSNorm, MultiHeadNorm, nn.Dropout,
        nn.Identity, *(type(ACT2FN[name]) for name in ACTIVATIONS),
    }

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size) if config.vocab_size else None
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.blocks = nn.ModuleList(XLSTMBlock(config, idx) for idx in range(config.num_hidden_layers))
        self.out_norm = make_norm(config) if config.add_out_norm else nn.Identity()
        # a cache written by blocks of other shapes (width, heads, block kinds) cannot continue here
        self.block_shapes = tuple(tuple(parameter.shape) for parameter in self.blocks.parameters())
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding | None:
        return self.embeddings

    def set_input_embeddings(self, new_embeddings: nn.Embedding):
        self.embeddings = new_embeddings

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: XLSTMCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        encoder_hidden_states: torch.FloatTensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        token_type_ids: None = None,
        position_ids: torch.LongTensor | None = None,
        seq_idx: torch.LongTensor | None = None,
        cu_seq_lens_q: torch.LongTensor | None = None,
        cu_seq_lens_k: torch.LongTensor | None = None,
        max_length_q: int | None = None,
        max_length_k: int | None = None,
    ) -> XLSTMModelOutput:
        r"""
        input_ids: [B, T] token ids, or `inputs_embeds` [B, T, hidden].
        attention_mask: [B, T'] with T' >= T, 1 at real tokens and 0 at padding; its last T columns
            belong to this input. Padded steps leave every recurrent state untouched.
        cache: state to continue from (generation, or a long input fed in pieces); updated in place.
        use_cache: return the cache; defaults to `config.use_cache` outside training (never for a
            bidirectional encoder, whose backward direction needs the whole input).
        encoder_hidden_states: [B, S, hidden] the encoder outputs a decoder (`add_cross_attention`) reads,
            with their padding `encoder_attention_mask` [B, S].
        output_attentions: only False or None (`generate` passes it to every encoder): no attention weights.
        token_type_ids: only None (taken to say so, where other models use them).
        position_ids, seq_idx, cu_seq_lens_q/k, max_length_q/k: where packed sequences start in a row, as
            `DataCollatorWithFlattening` marks them: every state starts afresh there (docs/design.md 1.7).
        No other keywords: `generate` hands an encoder only those of its signature.
        """
        unused = {"output_attentions": output_attentions, "token_type_ids": token_type_ids}
        check_unused_kwargs(self, {name: value for name, value in unused.items() if value is not None})
        batch_size, length = self._check_inputs(input_ids, inputs_embeds)
        mask = padding_mask(attention_mask, batch_size, length)
        resets = sequence_starts(batch_size, length, mask, position_ids, seq_idx, cu_seq_lens_q, cu_seq_lens_k,
                                 max_length_q, max_length_k)
        inputs_embeds = self._embed(input_ids, inputs_embeds, mask)
        encoder_mask = None if encoder_attention_mask is None else encoder_attention_mask.bool()
        use_cache = self._resolve_use_cache(cache, use_cache)
        if cache is None and use_cache:
            cache = XLSTMCache(len(self.blocks))
        if cache is not None:
            check_cache(cache, len(self.blocks), batch_size, self.block_shapes)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states

        all_hidden_states = None
        if self.can_decode_compiled(inputs_embeds, mask, resets, cache, use_cache, output_hidden_states):
            hidden_states = self.decode_compiled(inputs_embeds, cache)
        else:
            hidden_states, all_hidden_states = self._run_blocks(
                inputs_embeds, mask, cache, use_cache, output_hidden_states, encoder_hidden_states, encoder_mask,
                resets,
            )
            hidden_states = self.out_norm(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        if use_cache:
            cache.seen_tokens += length
            cache.block_shapes = self.block_shapes
        return XLSTMModelOutput(
            last_hidden_state=hidden_states, cache=cache if use_cache else None, hidden_states=all_hidden_states
        )

    def _run_blocks(
        self, hidden_states, mask, cache, use_cache, output_hidden_states, encoder_hidden_states, encoder_mask,
        resets,
    ):
        """The blocks in turn, each continuing from its state in `cache` where there is one and leaving the
        new one there with `use_cache`. -> (output, the input of every block when `output_hidden_states`)."""
        all_hidden_states = () if output_hidden_states else None
        for idx, block in enumerate(self.blocks):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            state = cache.layer_states[idx] if cache is not None else None
            hidden_states, state = block(hidden_states, mask, state, encoder_hidden_states, encoder_mask, resets)
            if use_cache:
                cache.layer_states[idx] = state
        return hidden_states, all_hidden_states

    def _resolve_use_cache(self, cache: XLSTMCache | None, use_cache: bool | None) -> bool:
        if self.config.bidirectional:
            if cache is not None or use_cache:
                raise ValueError(
                    "A bidirectional xLSTM reads the whole input backwards too and cannot continue from a "
                    "cache; call it without cache and use_cache."
                )
            return False
        if use_cache is None:
            return cache is not None or (self.config.use_cache and not self.training)
        return use_cache

    def _check_inputs(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> tuple[int, int]:
        """Token ids [B, T] in the vocabulary, or float vectors [B, T, hidden]: -> (B, T)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is not None:
            check_embeddings("inputs_embeds", inputs_embeds, self.config.hidden_size)
            return inputs_embeds.shape[:2]
        if self.embeddings is None:
            raise ValueError(
                "This model has no token embedding (config.vocab_size is None); "
                "pass inputs_embeds instead of input_ids."
            )
        check_token_ids("input_ids", input_ids, getattr(self.embeddings, "num_embeddings", None))
        return input_ids.shape

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The vectors [B, T, hidden] of `input_ids`, or `inputs_embeds` in the model's dtype and zero at padded
        steps, whatever they held there (a padded step must not touch any state, and NaN * 0 is NaN)."""
        if inputs_embeds is None:
            if not host_reads_allowed():  # an id out of range fails check_token_ids' device-side assert; until it
                input_ids = input_ids.clamp(0, self.embeddings.num_embeddings - 1)  # does, the lookup stays in range
            return self.embedding_dropout(self.embeddings(input_ids))
        if mask is not None:
            inputs_embeds = inputs_embeds.masked_fill(~mask[..., None], 0.0)
        check_finite("inputs_embeds", inputs_embeds, "attention_mask")
        return self.embedding_dropout(inputs_embeds.to(self.dtype))  # float64 from numpy, say


class XLSTMLMGenerationMixin(XLSTMGenerationMixin):
    """What the heads that predict tokens share: `generate`, and the logits of the LM head (`self.lm_head`, tied
    to the embedding with `tie_word_embeddings`), soft-capped, and their loss. (transformers knows a generating
    model by a base class whose name ends in GenerationMixin.)"""

    def logits_and_loss(
        self, hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor, labels: torch.Tensor | None,
        loss_kwargs: dict,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states [B, T, hidden] -> (logits [B, T', vocab] at the kept positions, loss or None)."""
        logits = soft_cap(self.lm_head(keep_positions(hidden_states, logits_to_keep)), self.config.logit_soft_cap)
        if labels is None:
            return logits, None
        return logits, self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **loss_kwargs)


class XLSTMForCausalLM(XLSTMPreTrainedModel, XLSTMLMGenerationMixin):
    """xLSTM language model: the block stack and a (optionally tied, optionally soft-capped) LM head."""

    _tied_weights_keys = {"lm_head.weight": "backbone.embeddings.weight"}
    _fsdp_plan = {"lm_head": "keep_full_weight"}

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        if not config.vocab_size:
            raise ValueError("XLSTMForCausalLM needs a vocabulary; set config.vocab_size.")
        self.backbone = XLSTMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Also loads a checkpoint of transformers' built-in xLSTM (`"model_type": "xlstm"`, the layout of
        NX-AI/xLSTM-7b), converting config and weights; `scripts/convert_transformers_xlstm.py` does it once."""
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        if args or not is_transformers_xlstm_checkpoint(pretrained_model_name_or_path, **hub_kwargs):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        return load_transformers_xlstm_checkpoint(cls, pretrained_model_name_or_path, kwargs, HUB_KWARGS)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        cache: XLSTMCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> XLSTMCausalLMOutput:
        r"""
        labels: [B, T] next-token targets (shifted inside), -100 where ignored.
        logits_to_keep: compute logits only for the last this many positions (0: all), or, as a 1-D tensor, for
            these positions.
        kwargs: what transformers' causal-LM loss takes (`num_items_in_batch`, `ignore_index`, `shift_labels`), and
            the markers of packed sequences (`position_ids`, ...; see `XLSTMModel.forward`).
        Other arguments as in `XLSTMModel.forward`.
        """
        check_unused_kwargs(self, kwargs, LOSS_KWARGS + PACKING_KWARGS)
        packing, loss_kwargs = split_packing_kwargs(kwargs)
        rows_steps = input_rows_and_steps(input_ids, inputs_embeds)
        if labels is not None and rows_steps is not None:
            check_class_labels("labels", labels, [rows_steps], self.config.vocab_size,
                               "next-token targets of the input's shape [batch, length]", "token id")
        outputs = self.backbone(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            **packing,
        )
        logits, loss = self.logits_and_loss(outputs.last_hidden_state, logits_to_keep, labels, loss_kwargs)
        return XLSTMCausalLMOutput(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )


# ---------------------------------------------------------------------------------------------------
# Classification heads
# ---------------------------------------------------------------------------------------------------


class XLSTMClassifierBase(XLSTMPreTrainedModel):
    """The body the classification heads share: the block stack over token ids, or over continuous
    sequences `past_values` [B, T, num_input_channels] on a model without vocabulary (`vocab_size=None`)."""

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        if config.num_labels < 1:
            raise ValueError(f"num_labels={config.num_labels}; a classifier needs config.num_labels >= 1.")
        self.num_labels = config.num_labels
        self.backbone = XLSTMModel(config)
        self.value_embedding = None if config.vocab_size else nn.Linear(config.num_input_channels, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def encode(
        self, input_ids, attention_mask, inputs_embeds, past_values, output_hidden_states, packing: dict | None = None
    ) -> XLSTMModelOutput:
        """The block stack's outputs for token ids, embeddings or continuous values (`packing`: the markers of
        packed sequences)."""
        return self.backbone(
            input_ids,
            attention_mask=attention_mask,
            inputs_embeds=embed_past_values(self.value_embedding, past_values, inputs_embeds, attention_mask),
            use_cache=False,
            output_hidden_states=output_hidden_states,
            **(packing or {}),
        )


class XLSTMForSequenceClassification(XLSTMClassifierBase):
    """A label (or labels, or a regression target) per sequence. A causal model pools the output at the
    last real step; a bidirectional one (`config.bidirectional`) the outputs at the last and the first
    real step, where each direction has read the whole sequence. The real steps are those of
    `attention_mask`, or without one, as in transformers, the tokens other than `config.pad_token_id`. Without
    vocabulary (`config.vocab_size=None`) it classifies continuous sequences `past_values` [B, T,
    num_input_channels]."""

    accepts_loss_kwargs = False  # its loss is a mean over the batch: Trainer divides by accumulation steps

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        pooled_size = config.hidden_size * (2 if config.bidirectional else 1)
        self.score = nn.Linear(pooled_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        past_values: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        r"""
        past_values: [B, T, num_input_channels] continuous inputs, for a model without vocabulary.
        labels: [B] class ids, [B, num_labels] multi-label targets, or [B] / [B, num_labels] regression
            targets, as `config.problem_type` says (inferred as in transformers when unset).
        """
        check_unused_kwargs(self, kwargs)
        rows_steps = input_rows_and_steps(input_ids, inputs_embeds, past_values)
        if rows_steps is not None and attention_mask is not None:  # the pooled steps must be real
            check_attention_mask("attention_mask", attention_mask, *rows_steps, values=False)  # values: by the stack
            check_every_row_has_a_real_step("attention_mask", attention_mask, rows_steps[1])
        if rows_steps is not None and labels is not None:
            check_sequence_labels(labels, rows_steps[0], self.num_labels, self.config.problem_type)
        outputs = self.encode(input_ids, attention_mask, inputs_embeds, past_values, output_hidden_states)
        hidden_states = outputs.last_hidden_state  # [B, T, hidden]
        if attention_mask is None:
            attention_mask = self._non_pad_tokens(input_ids)
        first, last = real_step_bounds(attention_mask, *hidden_states.shape[:2], hidden_states.device)
        batch_size = hidden_states.shape[0]
        rows = torch.arange(batch_size, device=hidden_states.device)
        pooled = hidden_states[rows, last]
        if self.config.bidirectional:
            pooled = torch.cat([pooled, hidden_states[rows, first]], dim=-1)  # [B, 2 * hidden]
        logits = self.score(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _non_pad_tokens(self, input_ids: torch.Tensor | None) -> torch.Tensor | None:
        """Where no attention_mask is given: the tokens other than `config.pad_token_id`, as transformers'
        classifiers find the pooled token (None, every step real, for embeddings or without a pad id)."""
        if input_ids is None:
            return None
        if self.config.pad_token_id is None:
            if input_ids.shape[0] > 1:
                logger.warning_once(
                    f"{type(self).__name__} was given no attention_mask and config.pad_token_id is not set: it pools "
                    "the last step of every row. Pass attention_mask if rows are padded."
                )
            return None
        return input_ids != self.config.pad_token_id


class XLSTMForTokenClassification(XLSTMClassifierBase):
    """A label per step (tagging); best with a bidirectional encoder (`config.bidirectional=True`). Without
    vocabulary it tags continuous sequences `past_values` [B, T, num_input_channels]."""

    def __init__(self, config: XLSTMConfig):
        super().__init__(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        past_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        r"""
        past_values: [B, T, num_input_channels] continuous inputs, for a model without vocabulary.
        labels: [B, T] class ids, -100 where ignored (padding).
        kwargs: what transformers' token-classification loss takes (`num_items_in_batch`, `ignore_index`), and the
            markers of packed sequences (`position_ids`, ...; see `XLSTMModel.forward`).
        """
        check_unused_kwargs(self, kwargs, LOSS_KWARGS + PACKING_KWARGS)
        packing, loss_kwargs = split_packing_kwargs(kwargs)
        rows_steps = input_rows_and_steps(input_ids, inputs_embeds, past_values)
        if rows_steps is not None and labels is not None:
            check_class_labels("labels", labels, [rows_steps], self.num_labels, "[batch, length] class ids")
        outputs = self.encode(input_ids, attention_mask, inputs_embeds, past_values, output_hidden_states, packing)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # [B, T, num_labels]
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, **loss_kwargs)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "XLSTMLMGenerationMixin",
    "XLSTMCache",
    "XLSTMCausalLMOutput",
    "XLSTMForCausalLM",
    "XLSTMForSequenceClassification",
    "XLSTMForTokenClassification",
    "XLSTMModel",
    "XLSTMModelOutput",
    "XLSTMPreTrainedModel",
]
