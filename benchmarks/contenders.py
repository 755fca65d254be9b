"""The models the studies compare, behind one interface: token ids [B, T] -> logits [B, T, num_outputs] at
every position, causal (position t sees tokens up to t). Each is sized to a common parameter budget by its
width; `build` returns the model and its parameter count.

* xLSTM variants (ours): "xlstm-m" (mLSTM blocks), "xlstm-s" (sLSTM blocks), "xlstm-ms" (alternating);
* the official `xlstm` package's `xLSTMBlockStack` with the same blocks ("official-s", "official-ms"), between
  an embedding and a linear head initialised as ours (the sLSTM on its PyTorch "vanilla" backend);
* "lstm", "gru": torch.nn, one layer per block of the others, embedding and linear head around them;
* "llama": transformers' LlamaForTokenClassification (causal attention, RoPE);
* "mamba": transformers' MambaModel with a linear head (the PyTorch scan on the CPU).
"""

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForTokenClassification, MambaConfig, MambaModel

from xlstm_hf import XLSTMConfig, XLSTMForTokenClassification

XLSTM_PATTERNS = {"xlstm-m": ["mlstm"], "xlstm-s": ["slstm"], "xlstm-ms": ["mlstm", "slstm"]}
OFFICIAL_PATTERNS = {"official-s": ["slstm"], "official-ms": ["mlstm", "slstm"]}
CONTENDERS = (*XLSTM_PATTERNS, *OFFICIAL_PATTERNS, "lstm", "gru", "llama", "mamba")

# How the sLSTM gate biases start (the forget gate's; the others start at 0 in every option), by the names
# of the official `sLSTMCellConfig.bias_init`: "powerlaw_blockdependent" (both packages' default: about +5
# to -7 over the units of a head, block-dependent), "small_init" (forget bias linspace(3, 6): long memory),
# "standard" (every gate uniform in +-1/sqrt(hidden)), "zeros".
SLSTM_BIAS_INITS = ("powerlaw_blockdependent", "small_init", "standard", "zeros")


def slstm_bias(option: str, num_heads: int, head_dim: int, hidden: int) -> torch.Tensor:
    """[num_heads, 4 (gates i, f, z, o), head_dim]: the sLSTM biases of `option` (SLSTM_BIAS_INITS, less the
    block-dependent default, which the models set themselves), as the official cell sets them."""
    bias = torch.zeros(num_heads, 4, head_dim)
    if option == "small_init":
        bias[:, 1] = torch.linspace(3.0, 6.0, head_dim)
    elif option == "standard":
        bias.uniform_(-1 / hidden**0.5, 1 / hidden**0.5)
    elif option != "zeros":
        raise ValueError(f"unknown sLSTM bias init {option!r}; choose from {SLSTM_BIAS_INITS}")
    return bias


class RecurrentTagger(nn.Module):
    """Embedding, a stacked torch.nn.LSTM or GRU, linear head."""

    def __init__(self, cell: str, vocab_size: int, hidden: int, layers: int, num_outputs: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, input_ids=None, inputs_embeds=None):
        hidden, _ = self.rnn(self.embedding(input_ids) if inputs_embeds is None else inputs_embeds)
        return self.head(hidden)


class MambaTagger(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int, num_outputs: int):
        super().__init__()
        self.backbone = MambaModel(
            MambaConfig(
                vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, state_size=16, use_cache=False
            )
        )
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.head(self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds).last_hidden_state)


class OfficialTagger(nn.Module):
    """Embedding, the official package's `xLSTMBlockStack`, linear head; embedding and head initialised as
    ours (and as the official `xLSTMLMModel`): normal with std sqrt(2 / (5 hidden)), head bias 0."""

    def __init__(self, stack: nn.Module, vocab_size: int, num_outputs: int):
        super().__init__()
        hidden = stack.config.embedding_dim
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.stack = stack
        self.head = nn.Linear(hidden, num_outputs)
        with torch.no_grad():
            for weight in (self.embedding.weight, self.head.weight):
                weight.normal_(0, (2 / (5 * hidden)) ** 0.5)
            self.head.bias.zero_()

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.head(self.stack(self.embedding(input_ids) if inputs_embeds is None else inputs_embeds))


def official_stack(hidden: int, pattern: list[str], slstm_heads: int = 4, conv: int = 4, ffn: bool = True,
                   bias_init: str = "powerlaw_blockdependent", context_length: int = 512) -> nn.Module:
    """The official `xLSTMBlockStack` of NeurIPS blocks in `pattern`, configured as our contenders are: mLSTM
    with 4 heads, conv 4, q/k/v blocks of 4; sLSTM on the vanilla (PyTorch) backend with `slstm_heads`
    heads, causal conv of width `conv` (0: none), followed by the gated feed-forward (1.3, GELU) if `ffn`."""
    from xlstm import (
        FeedForwardConfig,
        mLSTMBlockConfig,
        mLSTMLayerConfig,
        sLSTMBlockConfig,
        sLSTMLayerConfig,
        xLSTMBlockStack,
        xLSTMBlockStackConfig,
    )

    mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4))
    slstm = sLSTMBlockConfig(
        slstm=sLSTMLayerConfig(backend="vanilla", num_heads=slstm_heads, conv1d_kernel_size=conv,
                               bias_init=bias_init),
        feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu") if ffn else None,
    )
    config = xLSTMBlockStackConfig(
        mlstm_block=mlstm if "mlstm" in pattern else None,
        slstm_block=slstm if "slstm" in pattern else None,
        slstm_at=[index for index, kind in enumerate(pattern) if kind == "slstm"],
        num_blocks=len(pattern),
        embedding_dim=hidden,
        context_length=context_length,
    )
    return xLSTMBlockStack(config)


class HFTagger(nn.Module):
    """A transformers token classifier (ours, Llama) returning its logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.model(input_ids=input_ids, inputs_embeds=inputs_embeds).logits

    def embed(self, input_ids):
        return self.model.get_input_embeddings()(input_ids)


def make(name: str, vocab_size: int, hidden: int, layers: int, num_outputs: int, **recipe) -> nn.Module:
    """`recipe` (xLSTM and official contenders only): slstm_heads (4), conv (the sLSTM's causal conv width,
    4; 0: none), ffn (the feed-forward after each sLSTM, True), bias_init (of the sLSTM gates, one of
    SLSTM_BIAS_INITS)."""
    slstm_heads, conv = recipe.get("slstm_heads", 4), recipe.get("conv", 4)
    ffn, bias_init = recipe.get("ffn", True), recipe.get("bias_init", "powerlaw_blockdependent")
    if name in XLSTM_PATTERNS:
        pattern = (XLSTM_PATTERNS[name] * layers)[:layers]
        config = XLSTMConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_heads=4,
            layer_types=pattern,
            num_labels=num_outputs,
            chunk_size=32,
            slstm_num_heads=slstm_heads,
            slstm_conv_kernel_size=conv,
            ffn_proj_factor=1.3 if ffn else 0.0,
        )
        model = XLSTMForTokenClassification(config)
        if bias_init != "powerlaw_blockdependent":
            with torch.no_grad():
                for block in model.backbone.blocks:
                    if config.layer_types[block.mixer.layer_idx] == "slstm":
                        block.mixer.bias.copy_(slstm_bias(bias_init, slstm_heads, hidden // slstm_heads, hidden))
        return HFTagger(model)
    if name in OFFICIAL_PATTERNS:
        pattern = (OFFICIAL_PATTERNS[name] * layers)[:layers]
        stack = official_stack(hidden, pattern, slstm_heads, conv, ffn, bias_init)
        return OfficialTagger(stack, vocab_size, num_outputs)
    if name in ("lstm", "gru"):
        return RecurrentTagger(name, vocab_size, hidden, layers, num_outputs)
    if name == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=int(8 * hidden / 3) // 8 * 8,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=4096,
            num_labels=num_outputs,
            pad_token_id=0,
        )
        return HFTagger(LlamaForTokenClassification(config))
    if name == "mamba":
        return MambaTagger(vocab_size, hidden, layers, num_outputs)
    raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fit_width(make_at_width, budget: int) -> int:
    """The width (a multiple of 8, at most 1024) at which `make_at_width(width)` has the parameter count
    closest to `budget` (bisection: the count grows with the width)."""

    def count(width: int) -> int:
        return parameter_count(make_at_width(width))

    low, high = 1, 128  # in units of 8
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(8 * middle) < budget else (low, middle)
    return min((8 * low, 8 * high), key=lambda w: abs(count(w) - budget))


def build(name: str, vocab_size: int, num_outputs: int, layers: int, budget: int, seed: int = 0,
          width: int | None = None, **recipe):
    """(model, parameters): `name` at the width whose parameter count comes closest to `budget` (or at
    `width`), its weights drawn after torch.manual_seed(seed); `recipe` as in `make`."""
    if width is None:
        width = fit_width(lambda width: make(name, vocab_size, width, layers, num_outputs, **recipe), budget)
    torch.manual_seed(seed)
    model = make(name, vocab_size, width, layers, num_outputs, **recipe)
    return model, parameter_count(model)


def ours_from_official(official: OfficialTagger, num_outputs: int) -> HFTagger:
    """Our token classifier with the weights of an official contender (through the package's conversion),
    for checking that both compute the same function and gradients."""
    from xlstm_hf.checkpoint_mapping import config_from_official_stack, load_converted_weights, neurips_stack_weights

    config = config_from_official_stack(official.stack.config, vocab_size=official.embedding.num_embeddings)
    config.num_labels = num_outputs
    ours = XLSTMForTokenClassification(config)
    weights = neurips_stack_weights(official.stack, prefix="backbone.")
    weights |= {"backbone.embeddings.weight": official.embedding.weight, "classifier.weight": official.head.weight,
                "classifier.bias": official.head.bias}
    load_converted_weights(ours, weights)
    return HFTagger(ours)


def embed(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The input embeddings of `input_ids` (for gradients with respect to the inputs)."""
    if isinstance(model, HFTagger):
        return model.embed(input_ids)
    if isinstance(model, (RecurrentTagger, OfficialTagger)):
        return model.embedding(input_ids)
    return model.backbone.embeddings(input_ids)
