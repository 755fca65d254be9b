"""Padded batches for the padding tests."""

import torch


def pad_batch(sequences: list[torch.Tensor], side: str = "left", pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences [T_i, ...] into `(inputs [B, T, ...], attention_mask [B, T])`, padded with `pad`."""
    length = max(len(sequence) for sequence in sequences)
    first = sequences[0]
    inputs = torch.full((len(sequences), length, *first.shape[1:]), pad, dtype=first.dtype)
    mask = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        span = slice(length - len(sequence), length) if side == "left" else slice(0, len(sequence))
        inputs[row, span] = sequence
        mask[row, span] = 1
    return inputs, mask
