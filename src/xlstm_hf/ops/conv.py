"""The depthwise causal convolution over time of the mLSTM and sLSTM layers: the PyTorch reference."""

import torch


def causal_conv1d(
    x: torch.Tensor, history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, resets: torch.Tensor | None = None
) -> torch.Tensor:
    """x [B, T, F] following `history` [B, K-1, F] (the inputs before it), weight [F, 1, K], bias [F]
    -> y [B, T, F] with y[:, t] = bias + sum_k weight[:, 0, k] * window[:, t + k], window = history then x.
    resets [B, T] bool: True where a sequence starts (docs/design.md 1.7); a tap reads an input only where no
    sequence starts after it, up to and including step t (before a start: zeros, as before any sequence)."""
    window = torch.cat([history, x], dim=1)  # [B, K-1+T, F]
    length, kernel_size = x.shape[1], weight.shape[-1]
    if resets is not None:
        return _across_sequence_starts(window, weight, bias, resets)
    y = bias + window[:, :length] * weight[:, 0, 0]
    for k in range(1, kernel_size):  # the K taps as shifted products: no layout change, cheap backward
        y = y + window[:, k : k + length] * weight[:, 0, k]
    return y


def _across_sequence_starts(
    window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, resets: torch.Tensor
) -> torch.Tensor:
    """The convolution of `window` [B, K-1+T, F] where tap k of step t reads its input only within t's
    sequence: inputs are numbered by sequence (the history by the one before step 0)."""
    kernel_size = weight.shape[-1]
    sequence = torch.cat([resets.new_zeros(resets.shape[0], kernel_size - 1, dtype=torch.long),
                          resets.long().cumsum(1)], dim=1)  # [B, K-1+T]
    length = resets.shape[1]
    y = bias.expand(*window.shape[:1], length, -1)
    for k in range(kernel_size):
        same = sequence[:, k : k + length] == sequence[:, kernel_size - 1 :]  # [B, T]
        y = y + (window[:, k : k + length] * weight[:, 0, k]).masked_fill(~same[..., None], 0.0)
    return y
