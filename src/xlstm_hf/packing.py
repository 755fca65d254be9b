"""Packed rows (padding-free batches): where the sequences of a row start (docs/design.md 1.7).

transformers' `DataCollatorWithFlattening` concatenates sequences into one row and marks them by `position_ids`
that restart at 0 (and, where asked, by `seq_idx` or flash-attention's `cu_seq_lens_q/k` and `max_length_q/k`).
A recurrent model must not carry a state across such a boundary: at a start, every state begins afresh, as at the
start of a row. `sequence_starts` turns any of these markers into one bool tensor [B, T], True at the real steps
that start a sequence after the row's first step (step 0 of a row starts afresh anyway, unless it continues
a cache: then position 0 there starts afresh, any other position continues).
"""

import torch

from .input_checks import check_sequence_shape, host_reads_allowed, require_tensor

PACKING_KWARGS = ("position_ids", "seq_idx", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def sequence_starts(
    batch_size: int,
    length: int,
    mask: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
) -> torch.Tensor | None:
    """[B, T] bool, True at the real steps (`mask` [B, T], or all) where a packed sequence starts; None where
    no marker is given. `max_length_q/k` come with `cu_seq_lens_q/k` and are not needed."""
    if position_ids is not None:
        positions = _markers("position_ids", position_ids, batch_size, length)
        starts = torch.cat([positions[:, :1] == 0, positions[:, 1:] != positions[:, :-1] + 1], dim=1)
    elif seq_idx is not None:
        sequence = _markers("seq_idx", seq_idx, batch_size, length)
        starts = torch.cat([torch.zeros_like(sequence[:, :1], dtype=torch.bool), sequence[:, 1:] != sequence[:, :-1]],
                           dim=1)
    elif cu_seq_lens_q is not None or cu_seq_lens_k is not None:
        starts = _starts_from_lengths(cu_seq_lens_q if cu_seq_lens_q is not None else cu_seq_lens_k, batch_size,
                                      length)
    else:
        if max_length_q is not None or max_length_k is not None:
            raise ValueError("max_length_q/max_length_k come with cu_seq_lens_q/cu_seq_lens_k, which are missing; "
                             "pass them too, or position_ids.")
        return None
    return starts if mask is None else starts & mask


def _markers(name: str, value, batch_size: int, length: int) -> torch.Tensor:
    """position_ids or seq_idx as [B, T] integers ([T] and [1, T] are taken for a batch of one row)."""
    require_tensor(name, value)
    if value.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name} has dtype {value.dtype}; expected integers (torch.long).")
    if value.dim() == 1:
        value = value[None]
    check_sequence_shape(name, value, 2, f"[batch, length] = [{batch_size}, {length}] integers")
    if tuple(value.shape) != (batch_size, length):
        raise ValueError(f"{name} has shape {tuple(value.shape)}; expected [batch, length] = [{batch_size}, {length}] "
                         "like the input.")
    return value


def _starts_from_lengths(cumulative: torch.Tensor, batch_size: int, length: int) -> torch.Tensor:
    """Flash-attention's cumulative sequence lengths [n + 1] (0, then the end of each sequence) of one packed row
    -> its starts [1, T]."""
    require_tensor("cu_seq_lens_q", cumulative)
    if cumulative.dim() != 1 or batch_size != 1:
        raise ValueError(f"cu_seq_lens_q has shape {tuple(cumulative.shape)} for a batch of {batch_size} rows; "
                         "expected the cumulative lengths [n + 1] of the sequences packed into one row.")
    if host_reads_allowed() and (int(cumulative[0]) != 0 or int(cumulative[-1]) != length
                                 or bool((cumulative[1:] < cumulative[:-1]).any())):
        raise ValueError(f"cu_seq_lens_q={cumulative.tolist()} must rise from 0 to the row's length {length}.")
    starts = torch.zeros(1, length, dtype=torch.bool, device=cumulative.device)
    return starts.index_fill(1, cumulative[1:-1].long(), True)


def sequence_ends(starts: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[B, T] bool, True at the last real step of every sequence but the row's last one: where the backward
    direction of a bidirectional block starts a sequence."""
    real = mask if mask is not None else torch.ones_like(starts)
    sequence = starts.long().cumsum(1)  # [B, T] the sequence of every step
    following = torch.where(real, sequence, torch.iinfo(torch.long).max).flip(1).cummin(1).values.flip(1)
    next_real = torch.cat([following[:, 1:], torch.full_like(following[:, :1], torch.iinfo(torch.long).max)], 1)
    return real & (next_real != sequence) & (next_real != torch.iinfo(torch.long).max)
