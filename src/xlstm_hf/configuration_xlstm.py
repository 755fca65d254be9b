"""XLSTMConfig: one configuration for both xLSTM block families (docs/design.md 1.6)."""

import copy
import dataclasses
import difflib
import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

from ._compat import allow_layer_types, raise_type_errors_for_fields
from .ops import BACKENDS

logger = logging.get_logger(__name__)

LAYER_TYPES = ("mlstm", "slstm")
BLOCK_FAMILIES = ("neurips", "large")
NORM_TYPES = ("layernorm", "rmsnorm")
SCALINGS = ("mean", "std", None)
TIME_SERIES_LOSSES = ("mse", "nll", "quantile")
FORECASTERS = ("direct", "tirex")
DISTRIBUTIONS = ("student_t", "normal", "negative_binomial")

allow_layer_types(LAYER_TYPES)  # see _compat.py

# Values that the field `None` stands for, per block family: the official NeurIPS blocks and the
# xLSTM-Large (7B) block.
FAMILY_DEFAULTS = {
    "neurips": {"norm_type": "layernorm", "norm_eps": 1e-5, "ffn_proj_factor": 1.3, "ffn_act": "gelu",
                "gate_soft_cap": 0.0, "logit_soft_cap": 0.0},
    "large": {"norm_type": "rmsnorm", "norm_eps": 1e-6, "ffn_proj_factor": 2.667, "ffn_act": "silu",
              "gate_soft_cap": 15.0, "logit_soft_cap": 30.0},
}


def round_up_to_multiple(value: float, multiple: int, family: str = "neurips") -> int:
    """Round a width up to a multiple, exactly as the official code of each block family does: the
    NeurIPS code takes the ceiling of `value`, the xLSTM-Large code `(value + multiple - 1) // multiple`,
    which ignores a fractional part (2.6667 * 96 = 256.003 stays 256)."""
    if family == "large":
        return int((value + multiple - 1) // multiple * multiple)
    return int(math.ceil(value / multiple) * multiple)


@strict
class XLSTMConfig(PreTrainedConfig):
    r"""
    Configuration of an xLSTM model: a stack of mLSTM and sLSTM blocks (Beck et al. 2024).

    Args:
        vocab_size (`int` or `None`, defaults to 50304):
            Number of tokens. `None` builds a model without token embedding that takes `inputs_embeds`.
        hidden_size (`int`, defaults to 768): Width of the residual stream.
        num_hidden_layers (`int`, defaults to 12): Number of blocks.
        num_heads (`int`, defaults to 4): Heads of the mLSTM layers.
        layer_types (`list[str]`, *optional*):
            One entry per block, `"mlstm"` or `"slstm"`, in any pattern. Defaults to all `"mlstm"`.
        block_family (`str`, defaults to `"neurips"`):
            `"neurips"`: the blocks of the xLSTM paper (mLSTM with up-projection, causal conv and no
            feed-forward; sLSTM followed by a gated feed-forward; LayerNorm). `"large"`: the xLSTM-7B
            block (RMSNorm, mLSTM with plain linear q/k/v and a sigmoid output gate, soft-capped gates,
            SwiGLU feed-forward after every block, soft-capped logits).
        mlstm_proj_factor (`float`, defaults to 2.0): NeurIPS mLSTM up-projection factor.
        qkv_proj_blocksize (`int`, defaults to 4): NeurIPS mLSTM block size of the block-diagonal q/k/v maps.
        conv_kernel_size (`int`, defaults to 4): NeurIPS mLSTM causal conv width (0: no conv).
        qk_dim_factor (`float`, defaults to 0.5): Large mLSTM query/key width as a fraction of `hidden_size`.
        v_dim_factor (`float`, defaults to 1.0): Large mLSTM value width as a fraction of `hidden_size`.
        gate_soft_cap (`float`, *optional*): Soft cap `c * tanh(x / c)` of the mLSTM gate pre-activations;
            0 disables it. Defaults to 0 (NeurIPS) or 15 (Large).
        chunk_size (`int`, defaults to 64): Chunk length of the chunkwise mLSTM (any sequence length works).
        mlstm_eps (`float`, defaults to 1e-6): Epsilon of the mLSTM normaliser.
        backend (`str`, defaults to `"auto"`): How the recurrences run: `"native"` (PyTorch), `"cpp"` (the
            compiled CPU kernels; an error where they cannot run), `"cuda"` (the compiled CUDA kernels;
            likewise), `"peers"` (the GPU kernels of `mlstm_kernels` and `flashrnn`, where installed; likewise),
            or `"auto"` (the compiled kernel where one exists for the op and device and builds, on GPUs the
            peers' kernels until ours are validated, for calls without autograd, PyTorch otherwise).
            `xlstm-hf env` shows the choice per op.
        slstm_num_heads (`int`, *optional*): Heads of the sLSTM layers; defaults to `num_heads`.
        slstm_conv_kernel_size (`int`, defaults to 4): sLSTM causal conv width (0: no conv).
        slstm_norm_eps (`float`, *optional*): Epsilon of the sLSTM per-head norm; defaults to `norm_eps`.
        slstm_bf16_rounding (`bool`, defaults to `False`): Round the sLSTM's gate inputs, recurrent kernel,
            recurrent product and states to bfloat16 at every step (pointwise maths in float32, forget
            pre-activation clamped at 15), as the PyTorch backend of TiRex does; gradients pass the rounding
            straight through. Converted TiRex checkpoints set it, so that they give TiRex's outputs.
        ffn_proj_factor (`float`, *optional*): Gated feed-forward width as a fraction of `hidden_size`
            (0: no feed-forward). Defaults to 1.3 (NeurIPS) or 2.667 (Large).
        ffn_act (`str`, *optional*): Gate activation of the feed-forward, a name of transformers' `ACT2FN`.
            Defaults to `"gelu"` (NeurIPS) or `"silu"` (Large).
        round_up_to_multiple_of (`int`, defaults to 64): Inner widths are rounded up to a multiple of this.
        norm_type (`str`, *optional*): The block and output norms, `"layernorm"` or `"rmsnorm"`. Defaults to
            `"layernorm"` (NeurIPS) or `"rmsnorm"` (Large). The per-head norm is always a LayerNorm.
        norm_eps (`float`, *optional*): Epsilon of all norms. Defaults to 1e-5 (NeurIPS) or 1e-6 (Large).
        use_bias (`bool`, defaults to `False`): Biases in the linear projections.
        add_out_norm (`bool`, defaults to `True`): Norm after the last block.
        logit_soft_cap (`float`, *optional*): Soft cap of the output logits; 0 disables it. Defaults to 0
            (NeurIPS) or 30 (Large).
        dropout (`float`, defaults to 0.0): Dropout inside the blocks.
        embedding_dropout (`float`, defaults to 0.0): Dropout on the token embeddings.
        bidirectional (`bool`, defaults to `False`): Encoder mode: every block also runs over the reversed
            sequence (its own weights) and adds both directions, like a BiLSTM. No cache, no generation.
        encoder_layer_types (`list[str]`, *optional*): Blocks of the encoder of `XLSTMForSeq2SeqLM`;
            defaults to `layer_types`.
        add_cross_attention (`bool`, defaults to `False`): Decoder mode: every block reads the encoder
            outputs through multi-head cross-attention (set by `XLSTMForSeq2SeqLM` on its decoder).
        context_length, prediction_length, num_input_channels, patch_length, patch_stride, scaling, loss,
        distribution_output, num_parallel_samples, quantiles: The forecasting settings of
            `XLSTMForTimeSeriesPrediction`, named and meant as in PatchTST (`loss`: `"mse"`, `"nll"` or
            `"quantile"`; `quantiles`: the levels of the quantile loss, default [0.1, 0.5, 0.9]).
            `num_input_channels` is also the width of the `past_values` read by the classification
            heads of a model without vocabulary.
        forecaster (`str`, defaults to `"direct"`): How `XLSTMForTimeSeriesPrediction` forecasts.
            `"direct"`: a head on the state after the context forecasts `prediction_length` steps (as
            PatchTST). `"tirex"`: the design of TiRex (NX-AI): the context is cut or left-padded (missing
            values) to exactly `context_length`, scaled by its observed mean and standard deviation, every
            token forecasts the quantiles of the next patch, and horizons beyond one patch append masked
            patches (no forecast is fed back). Needs `loss="quantile"` with 0.5 among the `quantiles`,
            `scaling="std"`, `patch_stride == patch_length` and `context_length` a multiple of it.
        patch_ffn_size (`int`, defaults to 0): `forecaster="tirex"` only: the hidden width of the residual
            MLPs that embed each patch (with its observed mask) and map each output to its patch of
            quantiles; 0 makes both linear.
        tie_word_embeddings (`bool`, defaults to `False`): Share the embedding with the LM head.
        use_cache (`bool`, defaults to `True`): Return the recurrent state for generation.

    Example:

    ```python
    >>> from xlstm_hf import XLSTMConfig, XLSTMForCausalLM
    >>> config = XLSTMConfig(hidden_size=128, num_hidden_layers=4, layer_types=["mlstm", "slstm", "mlstm", "mlstm"])
    >>> model = XLSTMForCausalLM(config)
    ```
    """

    model_type = "xlstm_hf"
    # FSDP2 through `from_pretrained(..., distributed_config=...)`: a shard group per block, the out norm kept
    # whole; XLSTMPreTrainedModel drops the rules for modules a configuration does not build
    base_model_fsdp_plan = {
        "embeddings": "free_full_weight", "blocks.*": "free_full_weight", "out_norm": "keep_full_weight"
    }
    attribute_map = {
        "num_attention_heads": "num_heads", "num_blocks": "num_hidden_layers", "embedding_dim": "hidden_size"
    }

    vocab_size: int | None = 50304
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_heads: int = 4
    layer_types: list[str] | None = None
    block_family: str = "neurips"
    # mLSTM
    mlstm_proj_factor: float | int = 2.0
    qkv_proj_blocksize: int = 4
    conv_kernel_size: int = 4
    qk_dim_factor: float | int = 0.5
    v_dim_factor: float | int = 1.0
    gate_soft_cap: float | int | None = None
    chunk_size: int = 64
    mlstm_eps: float | int = 1e-6
    backend: str = "auto"
    # sLSTM
    slstm_num_heads: int | None = None
    slstm_conv_kernel_size: int = 4
    slstm_norm_eps: float | int | None = None
    slstm_bf16_rounding: bool = False
    # feed-forward, norms, head
    ffn_proj_factor: float | int | None = None
    ffn_act: str | None = None
    round_up_to_multiple_of: int = 64
    norm_type: str | None = None
    norm_eps: float | int | None = None
    use_bias: bool = False
    add_out_norm: bool = True
    logit_soft_cap: float | int | None = None
    dropout: float | int = 0.0
    embedding_dropout: float | int = 0.0
    # encoders and encoder-decoders
    bidirectional: bool = False
    encoder_layer_types: list[str] | None = None
    add_cross_attention: bool = False
    # time series (XLSTMForTimeSeriesPrediction; the names of PatchTST)
    context_length: int = 64
    prediction_length: int = 24
    num_input_channels: int = 1
    patch_length: int = 8
    patch_stride: int = 8
    scaling: str | bool | None = "std"
    loss: str = "mse"
    distribution_output: str = "student_t"
    num_parallel_samples: int = 100
    quantiles: list[float] | None = None
    forecaster: str = "direct"
    patch_ffn_size: int = 0
    # transformers
    tie_word_embeddings: bool = False
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None

    def __post_init__(self, **kwargs):
        for alias, name in self.attribute_map.items():  # num_blocks=... before the defaults that read it
            if alias in kwargs:
                setattr(self, name, kwargs.pop(alias))
        if self.layer_types is None:
            self.layer_types = ["mlstm"] * self.num_hidden_layers
        else:
            self.layer_types = list(self.layer_types)
        if self.slstm_num_heads is None:
            self.slstm_num_heads = self.num_heads
        if self.encoder_layer_types is not None:
            self.encoder_layer_types = list(self.encoder_layer_types)
        if self.scaling is True:
            self.scaling = "std"
        elif self.scaling is False:
            self.scaling = None
        if self.quantiles is None:
            self.quantiles = [0.1, 0.5, 0.9]
        if self.block_family not in BLOCK_FAMILIES:
            raise ValueError(f"block_family={self.block_family!r} is unknown; use one of {BLOCK_FAMILIES}.")
        for name, value in FAMILY_DEFAULTS[self.block_family].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.slstm_norm_eps is None:
            self.slstm_norm_eps = self.norm_eps
        self._warn_about_misspelt_keys(kwargs)
        super().__post_init__(**kwargs)
        self._check_sizes()
        self._check_layer_types()
        self._check_token_ids()
        self._check_time_series()

    def _warn_about_misspelt_keys(self, extra: dict) -> None:
        """transformers keeps keys a config does not know as attributes (so must we: other code stores its own
        there); a key close to one of our fields is most likely a typo that leaves that field at its default."""
        known = [f.name for f in dataclasses.fields(self)] + list(self.attribute_map)
        for key in extra:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
            if close and key not in known:
                logger.warning(f"XLSTMConfig got {key}={extra[key]!r}, which is not one of its fields: did you mean "
                               f"{close[0]}? It is kept as an extra attribute, and {close[0]} stays "
                               f"{getattr(self, close[0])!r}.")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def mlstm_inner_size(self) -> int:
        """Width of the NeurIPS mLSTM up-projection."""
        return round_up_to_multiple(self.mlstm_proj_factor * self.hidden_size, self.round_up_to_multiple_of)

    @property
    def mlstm_qk_size(self) -> int:
        if self.block_family == "large":
            return int(self.hidden_size * self.qk_dim_factor)
        return self.mlstm_inner_size

    @property
    def mlstm_v_size(self) -> int:
        if self.block_family == "large":
            return int(self.hidden_size * self.v_dim_factor)
        return self.mlstm_inner_size

    @property
    def ffn_size(self) -> int:
        """Width of the gated feed-forward (0: blocks have none)."""
        if not self.ffn_proj_factor:
            return 0
        return round_up_to_multiple(
            self.ffn_proj_factor * self.hidden_size, self.round_up_to_multiple_of, self.block_family
        )

    # ---- the parts of an encoder-decoder ----------------------------------------------------------
    def encoder_config(self) -> "XLSTMConfig":
        """The bidirectional encoder of `XLSTMForSeq2SeqLM`: `encoder_layer_types` (or `layer_types`) blocks
        with the token embedding."""
        config = copy.deepcopy(self)
        config.layer_types = list(self.encoder_layer_types or self.layer_types)
        config.num_hidden_layers = len(config.layer_types)
        config.bidirectional, config.is_encoder_decoder, config.use_cache = True, False, False
        config.tie_word_embeddings = False
        return config

    def decoder_config(self) -> "XLSTMConfig":
        """The causal decoder of `XLSTMForSeq2SeqLM`: `layer_types` blocks with cross-attention; it reads
        target tokens embedded by the encoder's embedding."""
        config = copy.deepcopy(self)
        config.vocab_size, config.tie_word_embeddings = None, False
        config.add_cross_attention, config.is_encoder_decoder, config.bidirectional = True, False, False
        return config

    # ---- validation: plain ValueErrors at construction, each naming the field and the fix ----------
    def validate_layer_type(self):
        """Replaces transformers' check, which knows only attention layer types; see `_check_layer_types`."""

    def validate_token_ids(self):
        """Replaces transformers' check, which only warns; see `_check_token_ids`."""

    def _check_layer_types(self):
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"layer_types has {len(self.layer_types)} entries but num_hidden_layers={self.num_hidden_layers}; "
                "give one entry per block, or leave layer_types unset for all-mLSTM."
            )
        for name in ("layer_types", "encoder_layer_types"):
            for index, layer_type in enumerate(getattr(self, name) or []):
                _require(layer_type in LAYER_TYPES,
                         f"{name}[{index}]={layer_type!r} is not a block type; use one of {LAYER_TYPES}.")
        _require(self.encoder_layer_types != [],
                 "encoder_layer_types is empty; give one entry per encoder block, or None to mirror layer_types.")

    def _check_sizes(self):
        """Sizes and the divisibility every block needs."""
        for name in ("hidden_size", "num_hidden_layers", "num_heads", "slstm_num_heads", "chunk_size",
                     "qkv_proj_blocksize", "round_up_to_multiple_of"):
            _require(getattr(self, name) >= 1, f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.vocab_size is not None:
            _require(self.vocab_size >= 1, f"vocab_size must be a positive integer or None, got {self.vocab_size}.")
        for name in ("conv_kernel_size", "slstm_conv_kernel_size"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0 (0 disables the conv), got {getattr(self, name)}.")
        for name in ("mlstm_proj_factor", "qk_dim_factor", "v_dim_factor", "norm_eps", "slstm_norm_eps", "mlstm_eps"):
            _require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}.")
        for name in ("ffn_proj_factor", "gate_soft_cap", "logit_soft_cap"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0 (0 disables it), got {getattr(self, name)}.")
        for name in ("dropout", "embedding_dropout"):
            _require(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), got {getattr(self, name)}.")
        _require(self.backend in BACKENDS, f"backend={self.backend!r} is unknown; use one of {BACKENDS}.")
        _require(self.norm_type in NORM_TYPES, f"norm_type={self.norm_type!r} is unknown; use one of {NORM_TYPES}.")
        _require(self.ffn_act in ACT2FN,
                 f"ffn_act={self.ffn_act!r} is unknown; use a name of transformers' ACT2FN such as 'gelu' or 'silu'.")
        _require(not (self.tie_word_embeddings and self.vocab_size is None),
                 "tie_word_embeddings=True needs a token embedding; set vocab_size or tie_word_embeddings=False.")
        block_types = set(self.layer_types) | set(self.encoder_layer_types or [])
        if "mlstm" in block_types:
            self._check_mlstm_sizes()
        if self.is_encoder_decoder or self.add_cross_attention:
            _require(self.hidden_size % self.num_heads == 0,
                     f"num_heads={self.num_heads} does not divide hidden_size={self.hidden_size}, as the "
                     "cross-attention of an encoder-decoder needs; choose a divisor of hidden_size.")
        if "slstm" in block_types:
            _require(self.hidden_size % self.slstm_num_heads == 0,
                     f"slstm_num_heads={self.slstm_num_heads} does not divide hidden_size={self.hidden_size}; "
                     "choose a divisor of hidden_size.")

    def _check_time_series(self):
        """The forecasting settings (used by XLSTMForTimeSeriesPrediction)."""
        for name in ("context_length", "prediction_length", "num_input_channels", "patch_length", "patch_stride",
                     "num_parallel_samples"):
            _require(getattr(self, name) >= 1, f"{name} must be a positive integer, got {getattr(self, name)}.")
        _require(self.patch_length <= self.context_length,
                 f"patch_length={self.patch_length} exceeds context_length={self.context_length}; the context must "
                 "hold at least one patch.")
        _require(self.scaling in SCALINGS, f"scaling={self.scaling!r} is unknown; use 'mean', 'std' or None.")
        _require(self.loss in TIME_SERIES_LOSSES, f"loss={self.loss!r} is unknown; use one of {TIME_SERIES_LOSSES}.")
        _require(self.distribution_output in DISTRIBUTIONS,
                 f"distribution_output={self.distribution_output!r} is unknown; use one of {DISTRIBUTIONS}.")
        _require(not (self.loss == "nll" and self.distribution_output == "negative_binomial" and self.scaling == "std"),
                 "distribution_output='negative_binomial' can be scaled but not shifted; use scaling='mean' or None.")
        _require(len(self.quantiles) > 0 and all(0 < q < 1 for q in self.quantiles)
                 and all(a < b for a, b in zip(self.quantiles, self.quantiles[1:])),
                 f"quantiles={self.quantiles} must be increasing levels strictly between 0 and 1.")
        _require(self.forecaster in FORECASTERS,
                 f"forecaster={self.forecaster!r} is unknown; use one of {FORECASTERS}.")
        _require(self.patch_ffn_size >= 0, f"patch_ffn_size must be >= 0 (0: linear maps), got {self.patch_ffn_size}.")
        if self.forecaster == "tirex":
            self._check_tirex_forecaster()
        else:
            _require(self.patch_ffn_size == 0,
                     f"patch_ffn_size={self.patch_ffn_size} applies to forecaster='tirex' only; set it to 0.")

    def _check_tirex_forecaster(self):
        """The settings forecaster="tirex" needs (see the docstring)."""
        prefix = "forecaster='tirex' needs"
        _require(self.loss == "quantile", f"{prefix} loss='quantile', got loss={self.loss!r}.")
        _require(0.5 in self.quantiles,
                 f"{prefix} the level 0.5 among the quantiles (the median is its point forecast), got "
                 f"{self.quantiles}.")
        _require(self.scaling == "std", f"{prefix} scaling='std' (its scaler), got scaling={self.scaling!r}.")
        _require(self.patch_stride == self.patch_length,
                 f"{prefix} patch_stride == patch_length (patches side by side), got {self.patch_stride} and "
                 f"{self.patch_length}.")
        _require(self.context_length % self.patch_length == 0,
                 f"{prefix} context_length={self.context_length} to be a multiple of patch_length="
                 f"{self.patch_length} (its window is whole patches).")
        _require(not self.bidirectional, f"{prefix} a causal backbone; set bidirectional=False.")

    def _check_token_ids(self):
        """Special token ids must lie in the vocabulary."""
        if self.vocab_size is None:
            return
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            for token_id in value if isinstance(value, list) else [value]:
                _require(token_id is None or 0 <= token_id < self.vocab_size,
                         f"{name}={token_id} is outside the vocabulary [0, {self.vocab_size}); "
                         f"use an id below vocab_size={self.vocab_size} or None.")

    def _check_mlstm_sizes(self):
        if self.block_family == "neurips":
            inner = self.mlstm_inner_size
            hint = "(mlstm_proj_factor * hidden_size rounded up to round_up_to_multiple_of)"
            _require(inner % self.num_heads == 0,
                     f"num_heads={self.num_heads} does not divide the mLSTM inner size {inner} {hint}; "
                     "choose num_heads dividing it.")
            _require(inner % self.qkv_proj_blocksize == 0,
                     f"qkv_proj_blocksize={self.qkv_proj_blocksize} does not divide the mLSTM inner size "
                     f"{inner} {hint}; choose a divisor.")
            return
        for name, size in (("qk_dim_factor", self.mlstm_qk_size), ("v_dim_factor", self.mlstm_v_size)):
            _require(size >= self.num_heads and size % self.num_heads == 0,
                     f"num_heads={self.num_heads} does not divide the mLSTM width {size} "
                     f"(= int(hidden_size * {name})); choose num_heads or {name} so that it does.")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


raise_type_errors_for_fields(XLSTMConfig)


__all__ = ["XLSTMConfig"]
