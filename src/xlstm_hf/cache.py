"""The recurrent state of a block stack, as a transformers `Cache` (docs/design.md 2)."""

import torch
from torch.utils._pytree import tree_leaves, tree_map_only
from transformers.cache_utils import Cache

# A mixer's recurrent state: (causal-conv history [B, K-1, width] or None, the cell's state tuple).
LayerState = tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]
# A block's state: (its mixer's state, the cross-attention keys and values of a decoder block or None).
BlockState = tuple[LayerState, tuple[torch.Tensor, torch.Tensor] | None]


class XLSTMCache(Cache):
    """The recurrent state of every block: its size is fixed, whatever the length of the sequence.

    `layer_states[i]` is block i's `BlockState`, or None before the first input. The model replaces the
    states after each call and never writes into them in place, so a cache can be used while training.
    A transformers `Cache`: `generate` continues from one it returned (it feeds only the tokens the cache
    has not read, `get_seq_length()` of them), beam search reorders it; it has no keys and values to crop.
    """

    is_compileable = False  # its states are replaced, not updated at fixed addresses
    is_croppable = False  # a recurrent state cannot forget the last tokens

    def __init__(self, num_layers: int):
        super().__init__(layers=[])
        self.layer_states: list[BlockState | None] = [None] * num_layers
        self.seen_tokens = 0
        self.block_shapes = None  # the parameter shapes of the blocks of the model that wrote the states

    def __len__(self) -> int:
        return len(self.layer_states)

    def __repr__(self) -> str:
        return f"XLSTMCache({len(self)} blocks, {self.seen_tokens} tokens read)"

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of tokens consumed so far (the state itself does not grow with it)."""
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1  # no limit

    def has_previous_state(self, layer_idx: int | None = None, state_idx: int | None = None) -> bool:
        states = self.layer_states if layer_idx is None else [self.layer_states[layer_idx]]
        return any(state is not None for state in states)

    @property
    def is_initialized(self) -> bool:
        return self.has_previous_state()

    @property
    def is_linear(self) -> list[bool]:
        """False for every block: to `generate`, a linear cache is one whose length it cannot ask, so it would
        feed a continued prompt whole; this one knows how many tokens it has read."""
        return [False] * len(self)

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self)

    @property
    def is_dummy(self) -> list[bool]:
        return [False] * len(self)

    @property
    def batch_size(self) -> int | None:
        for state in self.layer_states:
            if state is not None:
                (_, cell_state), _ = state
                return cell_state[0].shape[0]
        return None

    def reset(self) -> None:
        self.layer_states = [None] * len(self)
        self.seen_tokens = 0

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("An XLSTMCache holds a recurrent state, which cannot forget the last tokens; run the "
                         "model again from a cache saved before them.")

    def _map_rows(self, rows) -> None:
        self.layer_states = tree_map_only(torch.Tensor, rows, self.layer_states)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep the batch rows `beam_idx` (beam search), in that order."""
        self._map_rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Every batch row `repeats` times in a row (generate's expansion for beams or several sequences)."""
        self._map_rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def nbytes(self) -> int:
        """Bytes held by all states."""
        tensors = [leaf for leaf in tree_leaves(self.layer_states) if isinstance(leaf, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)


def check_cache(cache: XLSTMCache, num_layers: int, batch_size: int, block_shapes: tuple) -> None:
    """A cache must come from a model with the same blocks and hold the same batch rows."""
    if not isinstance(cache, XLSTMCache) or len(cache.layer_states) != num_layers:
        raise ValueError(
            f"cache must be an XLSTMCache of this model ({num_layers} blocks), got {type(cache).__name__}"
            f"{' with %d blocks' % len(cache.layer_states) if isinstance(cache, XLSTMCache) else ''}; "
            "pass the cache this model returned, or None to start afresh."
        )
    if cache.block_shapes not in (None, block_shapes):
        raise ValueError(
            "cache was written by a model whose blocks have other sizes (width, heads or block kinds); pass the "
            "cache this model returned, or None to start afresh."
        )
    if cache.batch_size not in (None, batch_size):
        raise ValueError(
            f"cache holds a batch of {cache.batch_size} but the input has {batch_size} rows; "
            "pass the cache returned for this batch, or None to start afresh."
        )
