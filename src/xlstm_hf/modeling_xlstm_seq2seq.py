"""xLSTM for sequence to sequence: a bidirectional xLSTM encoder over the source and a causal xLSTM decoder whose
blocks read the encoder outputs through cross-attention (the blocks, the cache and the LM head are those of
modeling_xlstm.py)."""

import torch
from torch import nn
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.bart.modeling_bart import shift_tokens_right
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .cache import XLSTMCache
from .configuration_xlstm import XLSTMConfig
from .input_checks import (
    LOSS_KWARGS,
    check_attention_mask,
    check_decoder_inputs,
    check_unused_kwargs,
    input_rows_and_steps,
)
from .modeling_xlstm import XLSTMLMGenerationMixin, XLSTMModel, XLSTMModelOutput, XLSTMPreTrainedModel


class XLSTMDecoder(XLSTMModel):
    """The decoder of `XLSTMForSeq2SeqLM`: causal blocks that also read the encoder outputs through
    cross-attention (`config.add_cross_attention`), over target vectors embedded by the encoder's embedding."""


class XLSTMForSeq2SeqLM(XLSTMPreTrainedModel, XLSTMLMGenerationMixin):
    """Sequence to sequence: a bidirectional xLSTM encoder over the source and a causal xLSTM decoder whose
    blocks read the encoder outputs through cross-attention, so a long source is not squeezed into one
    state. Source and target share the token embedding (and the LM head with `tie_word_embeddings`).

    Its base model is the encoder (`base_model_prefix`): an `XLSTMModel` checkpoint loads into it, the decoder
    and the LM head starting anew.
    """

    base_model_prefix = "encoder"
    _tied_weights_keys = {"lm_head.weight": "encoder.embeddings.weight"}
    _fsdp_plan = {"lm_head": "keep_full_weight"}

    def __init__(self, config: XLSTMConfig):
        config.is_encoder_decoder = True
        super().__init__(config)
        if not config.vocab_size:
            raise ValueError("XLSTMForSeq2SeqLM needs a vocabulary; set config.vocab_size.")
        self.encoder = XLSTMModel(config.encoder_config())
        self.decoder = XLSTMDecoder(config.decoder_config())
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.loss_type = "ForMaskedLM"  # the labels are aligned with the logits: cross-entropy without shift
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> XLSTMModel:
        """The encoder (of text: the only modality this model has)."""
        return self.encoder

    def get_decoder(self) -> XLSTMDecoder:
        return self.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.LongTensor) -> torch.LongTensor:
        """Teacher forcing: the labels shifted right behind `decoder_start_token_id` (-100 becomes padding)."""
        if self.config.decoder_start_token_id is None or self.config.pad_token_id is None:
            raise ValueError("Set config.decoder_start_token_id and config.pad_token_id to train from labels.")
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @deprecate_kwarg("cache_params", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: XLSTMModelOutput | tuple | None = None,
        cache: XLSTMCache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        input_ids, attention_mask: the source [B, S] and its padding; or `encoder_outputs` computed before.
        decoder_input_ids, decoder_attention_mask: the target so far [B, T]; made from `labels` when absent.
        labels: [B, T] target tokens, -100 where ignored.
        cache: the decoder's recurrent state and cross-attention keys/values, to continue decoding from.
        kwargs: what transformers' loss takes (`num_items_in_batch`, `ignore_index`).
        """
        check_unused_kwargs(self, kwargs, LOSS_KWARGS)
        source = input_rows_and_steps(encoder_outputs[0] if encoder_outputs is not None else None, input_ids,
                                      inputs_embeds)
        if source is not None and attention_mask is not None:  # the cross-attention's mask: exactly [B, S]
            check_attention_mask("attention_mask", attention_mask, *source, exact=True, values=False)
        check_decoder_inputs(source[0] if source else None, decoder_input_ids, decoder_inputs_embeds,
                             decoder_attention_mask, labels, self.config.vocab_size, self.config.hidden_size)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                output_hidden_states=output_hidden_states,
            )
        elif not isinstance(encoder_outputs, XLSTMModelOutput):
            encoder_outputs = XLSTMModelOutput(*encoder_outputs)
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        if decoder_inputs_embeds is None:
            decoder_inputs_embeds = self.get_input_embeddings()(decoder_input_ids)
        decoder_outputs = self.decoder(
            attention_mask=decoder_attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
        )
        logits, loss = self.logits_and_loss(decoder_outputs.last_hidden_state, logits_to_keep, labels, kwargs)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )


__all__ = ["XLSTMDecoder", "XLSTMForSeq2SeqLM"]
