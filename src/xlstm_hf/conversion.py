"""`convert_official_xlstm`: a model of the official `xlstm` package becomes ours, with its weights."""

import torch

from .checkpoint_mapping import (
    config_from_official_large,
    config_from_official_stack,
    large_weights,
    load_converted_weights,
    neurips_stack_weights,
)
from .modeling_xlstm import XLSTMForCausalLM, XLSTMModel


def convert_official_xlstm(model: torch.nn.Module) -> XLSTMModel | XLSTMForCausalLM:
    """Our equivalent of an official xLSTM model, with its weights (same device and dtype).

    `xLSTMBlockStack` -> `XLSTMModel` without token embedding (feed `inputs_embeds`);
    `xLSTMLMModel` and `xlstm.xlstm_large.model.xLSTMLarge` -> `XLSTMForCausalLM`.
    """
    kind = type(model).__name__
    if kind == "xLSTMBlockStack":
        config = config_from_official_stack(model.config, vocab_size=None)
        ours, weights = XLSTMModel(config), neurips_stack_weights(model, prefix="")
    elif kind == "xLSTMLMModel":
        config = config_from_official_stack(model.config, vocab_size=model.config.vocab_size)
        weights = neurips_stack_weights(model.xlstm_block_stack, prefix="backbone.")
        weights["backbone.embeddings.weight"] = model.token_embedding.weight
        weights["lm_head.weight"] = model.lm_head.weight
        ours = XLSTMForCausalLM(config)
    elif kind == "xLSTMLarge":
        config = config_from_official_large(model.config)
        ours, weights = XLSTMForCausalLM(config), large_weights(model.state_dict())
    else:
        raise TypeError(
            f"convert_official_xlstm takes an xLSTMBlockStack, xLSTMLMModel or xLSTMLarge of the official "
            f"`xlstm` package, got {kind}."
        )
    load_converted_weights(ours, weights)
    reference = next(model.parameters())
    return ours.to(device=reference.device, dtype=reference.dtype).eval()


__all__ = ["convert_official_xlstm"]
