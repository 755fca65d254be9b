"""transformers' `generate` for the xLSTM heads that generate (the causal LM and the encoder-decoder): its
arguments checked once, a cache to continue from checked, the steps run without host reads of values."""

import warnings

from transformers import GenerationMixin

from .cache import XLSTMCache
from .input_checks import check_generate_arguments, values_checked


class XLSTMGenerationMixin(GenerationMixin):
    """transformers' `generate`, with its arguments checked first: the prompt, the lengths, and a cache to continue
    from (`cache`, or its older names `past_key_values` and `cache_params`, with transformers' warning)."""

    def generate(self, *args, **kwargs):
        check_generate_arguments(args, kwargs, self.config.vocab_size)
        for old_name in ("past_key_values", "cache_params"):
            if old_name in kwargs:
                warnings.warn(f"`{old_name}` is deprecated for `generate`. Use `cache` instead.", FutureWarning)
                kwargs.setdefault("cache", kwargs.pop(old_name))
        if kwargs.get("cache") is not None:
            self._check_cache_to_continue(kwargs["cache"], args, kwargs)
        with values_checked():  # once here: the steps feed the tokens generate chose
            output = super().generate(*args, **kwargs)
        num_beams = kwargs.get("num_beams") or (kwargs.get("generation_config") or self.generation_config).num_beams
        for cache in (kwargs.get("cache"), getattr(output, "cache", None)):
            if isinstance(cache, XLSTMCache) and (num_beams or 1) > 1:
                cache.holds_beams = True
        return output

    def prepare_inputs_for_generation(
        self, input_ids, next_sequence_length=None, cache=None, inputs_embeds=None, **kwargs
    ):
        """transformers' preparation, feeding only the tokens a cache has not read where generate would feed them
        all (a decoder without `decoder_attention_mask` continuing from a cache: generate sizes the new input
        by that mask)."""
        if next_sequence_length is None and cache is not None and cache.get_seq_length():
            prompt = inputs_embeds if inputs_embeds is not None else input_ids
            next_sequence_length = prompt.shape[1] - cache.get_seq_length()
        return super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, inputs_embeds=inputs_embeds, **kwargs
        )

    def _check_cache_to_continue(self, cache, args: tuple, kwargs: dict) -> None:
        """A cache that `generate` can continue from: of this model, not left by a beam search (its rows are the
        beams at the last step, not the sequences returned), with a row per prompt row, and a prompt that holds
        the tokens the cache has read and at least one more (generate feeds only those)."""
        if not isinstance(cache, XLSTMCache):
            raise TypeError(f"cache is a {type(cache).__name__}; pass the XLSTMCache this model returned, or None.")
        if getattr(cache, "holds_beams", False):
            raise ValueError(
                "cache was left by a beam search: its rows are the beams at its last step, not the sequences it "
                "returned. Continue from the sequences without a cache (generate(sequences, ...)), or from a cache of "
                "greedy or sampled generation."
            )
        if self.config.is_encoder_decoder:
            name, prompt = "decoder_input_ids", kwargs.get("decoder_input_ids")
        else:
            name, prompt = "inputs_embeds", kwargs.get("inputs_embeds")
            if prompt is None:
                name, prompt = "input_ids", args[0] if args else kwargs.get("inputs", kwargs.get("input_ids"))
        rows, length = (prompt.shape[0], prompt.shape[1]) if prompt is not None else (None, 0)
        config = kwargs.get("generation_config") or self.generation_config
        beams = kwargs.get("num_beams") or config.num_beams or 1
        copies = beams if beams > 1 else kwargs.get("num_return_sequences") or config.num_return_sequences or 1
        if rows is not None and cache.batch_size not in (None, rows * copies):
            raise ValueError(
                f"cache holds {cache.batch_size} rows but {name} has {rows}"
                f"{f', which generate repeats {copies} times' if copies > 1 else ''}; pass the cache returned for "
                f"these rows{f', after cache.batch_repeat_interleave({copies})' if copies > 1 else ''}."
            )
        if cache.get_seq_length() >= length:
            raise ValueError(
                f"cache has read {cache.get_seq_length()} tokens but {name} holds {length}: pass the tokens the cache "
                "has read followed by the new ones (generate feeds only those after the first "
                f"{cache.get_seq_length()})."
            )
