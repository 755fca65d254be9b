"""The models the studies compare, behind one interface: token ids [B, T] -> logits [B, T, num_outputs] at
every position, causal (position t sees tokens up to t). Each is sized to a common parameter budget by its
width; `build` returns the model and its parameter count.

* xLSTM variants (ours): "xlstm-m" (mLSTM blocks), "xlstm-s" (sLSTM blocks), "xlstm-ms" (alternating);
* "lstm", "gru": torch.nn, one layer per block of the others, embedding and linear head around them;
* "llama": transformers' LlamaForTokenClassification (causal attention, RoPE);
* "mamba": transformers' MambaModel with a linear head (the PyTorch scan on the CPU).
"""

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForTokenClassification, MambaConfig, MambaModel

from xlstm_hf import XLSTMConfig, XLSTMForTokenClassification

XLSTM_PATTERNS = {"xlstm-m": ["mlstm"], "xlstm-s": ["slstm"], "xlstm-ms": ["mlstm", "slstm"]}
CONTENDERS = (*XLSTM_PATTERNS, "lstm", "gru", "llama", "mamba")


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


class HFTagger(nn.Module):
    """A transformers token classifier (ours, Llama) returning its logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.model(input_ids=input_ids, inputs_embeds=inputs_embeds).logits

    def embed(self, input_ids):
        return self.model.get_input_embeddings()(input_ids)


def make(name: str, vocab_size: int, hidden: int, layers: int, num_outputs: int) -> nn.Module:
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
        )
        return HFTagger(XLSTMForTokenClassification(config))
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


def build(name: str, vocab_size: int, num_outputs: int, layers: int, budget: int, seed: int = 0):
    """(model, parameters): `name` at the width whose parameter count comes closest to `budget`."""
    width = fit_width(lambda width: make(name, vocab_size, width, layers, num_outputs), budget)
    torch.manual_seed(seed)
    model = make(name, vocab_size, width, layers, num_outputs)
    return model, parameter_count(model)


def embed(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The input embeddings of `input_ids` (for gradients with respect to the inputs)."""
    if isinstance(model, HFTagger):
        return model.embed(input_ids)
    return (model.embedding if isinstance(model, RecurrentTagger) else model.backbone.embeddings)(input_ids)
