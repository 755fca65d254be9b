"""What the heads make of their inputs before and after the block stack: the padding mask, continuous values as
embeddings, the pooled steps, the positions whose logits are kept, the keyword arguments of packing and loss."""

import torch
from torch import nn

from .input_checks import check_attention_mask, check_finite, host_reads_allowed, require_tensor
from .packing import PACKING_KWARGS


def padding_mask(attention_mask: torch.Tensor | None, batch_size: int, length: int) -> torch.Tensor | None:
    """Bool mask [B, T] of real steps from an attention mask whose last T columns are this input's,
    or None where nothing is padded (the recurrences then skip all masking)."""
    if attention_mask is None:
        return None
    check_attention_mask("attention_mask", attention_mask, batch_size, length)
    mask = attention_mask[:, attention_mask.shape[1] - length :].bool()
    if not host_reads_allowed():  # traced or captured: no branch on the values
        return mask
    return None if bool(mask.all()) else mask

def split_packing_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """A head's keyword arguments as (the markers of packed sequences, what goes to the loss)."""
    packing = {name: value for name, value in kwargs.items() if name in PACKING_KWARGS}
    return packing, {name: value for name, value in kwargs.items() if name not in PACKING_KWARGS}

def keep_positions(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """hidden_states [B, T, hidden] at the last `logits_to_keep` positions (0: all), or at the positions a 1-D
    tensor lists (transformers' two meanings of `logits_to_keep`)."""
    if isinstance(logits_to_keep, torch.Tensor):
        return hidden_states[:, logits_to_keep]
    return hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states

def embed_past_values(
    value_embedding: nn.Linear | None, past_values: torch.Tensor | None, inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """`inputs_embeds` for continuous inputs `past_values` [B, T, C] (models without vocabulary); the values
    at padded steps are ignored (NaN allowed there), those at real steps must be finite."""
    if past_values is None:
        return inputs_embeds
    if value_embedding is None:
        raise ValueError("past_values need a model without vocabulary: set config.vocab_size=None and "
                         "config.num_input_channels to the number of channels.")
    if inputs_embeds is not None:
        raise ValueError("Pass past_values or inputs_embeds, not both.")
    require_tensor("past_values", past_values)
    if past_values.dim() != 3 or past_values.shape[-1] != value_embedding.in_features or 0 in past_values.shape:
        raise ValueError(f"past_values has shape {tuple(past_values.shape)}; expected [batch, length, "
                         f"num_input_channels={value_embedding.in_features}] with at least one row and one step.")
    if attention_mask is not None:
        check_attention_mask("attention_mask", attention_mask, past_values.shape[0], past_values.shape[1], values=False)
        padded = ~attention_mask[:, attention_mask.shape[1] - past_values.shape[1] :, None].bool()
        past_values = past_values.masked_fill(padded, 0.0)
    check_finite("past_values", past_values, "attention_mask")
    return value_embedding(past_values.to(value_embedding.weight.dtype))

def real_step_bounds(attention_mask: torch.Tensor | None, batch_size: int, length: int, device) -> tuple:
    """Indices [B] of the first and the last real step of every row (left or right padding alike)."""
    if attention_mask is None:
        first = torch.zeros(batch_size, dtype=torch.long, device=device)
        return first, first + length - 1
    steps = torch.arange(length, device=device)
    real = attention_mask[:, attention_mask.shape[1] - length :].bool()
    last = torch.where(real, steps, -1).amax(-1)
    first = torch.where(real, steps, length).amin(-1)
    return first, last
