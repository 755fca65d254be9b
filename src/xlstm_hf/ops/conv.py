"""The depthwise causal convolution over time of the mLSTM and sLSTM layers: the PyTorch reference."""

import torch


def causal_conv1d(x: torch.Tensor, history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [B, T, F] following `history` [B, K-1, F] (the inputs before it), weight [F, 1, K], bias [F]
    -> y [B, T, F] with y[:, t] = bias + sum_k weight[:, 0, k] * window[:, t + k], window = history then x."""
    window = torch.cat([history, x], dim=1)  # [B, K-1+T, F]
    length, kernel_size = x.shape[1], weight.shape[-1]
    y = bias + window[:, :length] * weight[:, 0, 0]
    for k in range(1, kernel_size):  # the K taps as shifted products: no layout change, cheap backward
        y = y + window[:, k : k + length] * weight[:, 0, k]
    return y
