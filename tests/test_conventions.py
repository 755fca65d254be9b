"""transformers' conventions that its common tests do not reach (each a silent wrong answer or an unclear error
once): older names of the cache, keywords a head does not use, pooling without a mask, padding that holds NaN,
the encoder-decoder's base model, dtypes of inputs, `logits_to_keep` as positions, misspelt config keys."""

import logging

import pytest
import torch
from tiny_models import PAD, noisy, random_ids, tiny_config

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMForTokenClassification,
    XLSTMModel,
)

pytestmark = pytest.mark.usefixtures("single_thread")
HEADS = [XLSTMModel, XLSTMForCausalLM, XLSTMForSequenceClassification, XLSTMForTokenClassification]


@pytest.fixture(scope="module")
def lm() -> XLSTMForCausalLM:
    torch.manual_seed(0)
    return noisy(XLSTMForCausalLM(tiny_config()))


@pytest.mark.parametrize("old_name", ["past_key_values", "cache_params"])
def test_older_names_of_the_cache_continue_from_it_with_transformers_warning(lm, old_name):
    ids = random_ids(2, 9)
    whole = lm(ids).logits[:, 5:]
    with pytest.warns(FutureWarning, match=f"`{old_name}` is deprecated"):
        continued = lm(ids[:, 5:], **{old_name: lm(ids[:, :5]).cache}).logits
    torch.testing.assert_close(continued, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", HEADS + [XLSTMForSeq2SeqLM], ids=lambda head: head.__name__)
@pytest.mark.parametrize("keyword, advice", [("token_type_ids", "no token types"),
                                             ("output_attentions", "no attention weights"), ("colour", None)])
def test_every_head_refuses_keywords_it_does_not_use(head, keyword, advice):
    model = head(tiny_config(decoder_start_token_id=1, num_labels=2)).eval()
    ids = random_ids(2, 5)
    inputs = {"input_ids": ids, "decoder_input_ids": ids} if head is XLSTMForSeq2SeqLM else {"input_ids": ids}
    with pytest.raises(TypeError, match=keyword) as error:
        model(**inputs, **{keyword: torch.zeros_like(ids) if keyword != "output_attentions" else True})
    assert advice is None or advice in str(error.value)


@pytest.mark.parametrize("head", [XLSTMForSequenceClassification, XLSTMForSeq2SeqLM], ids=lambda head: head.__name__)
def test_heads_that_pool_or_decode_refuse_packed_rows(head):
    model = head(tiny_config(decoder_start_token_id=1, num_labels=2)).eval()
    ids = random_ids(1, 6)
    inputs = {"input_ids": ids, "decoder_input_ids": ids} if head is XLSTMForSeq2SeqLM else {"input_ids": ids}
    with pytest.raises(TypeError, match="position_ids.*pad the batch"):
        model(**inputs, position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]]))


def test_the_loss_keywords_of_transformers_reach_the_loss(lm):
    ids = random_ids(2, 9)
    summed = lm(ids, labels=ids, num_items_in_batch=torch.tensor(4)).loss
    torch.testing.assert_close(summed, lm(ids, labels=ids).loss * 2 * 8 / 4)


@pytest.mark.parametrize("family", ["neurips-mixed", "large-mixed"])
def test_sequence_classifier_without_mask_pools_the_last_token_before_the_padding(family):
    torch.manual_seed(0)
    model = noisy(XLSTMForSequenceClassification(tiny_config(family, num_labels=3)))
    rows = [random_ids(7, seed=1), random_ids(4, seed=2)]
    padded = torch.full((2, 7), PAD)
    padded[0], padded[1, :4] = rows
    alone = torch.cat([model(row[None]).logits for row in rows])
    torch.testing.assert_close(model(padded).logits, alone, rtol=1e-5, atol=1e-5)


def test_sequence_classifier_without_mask_or_pad_id_warns_that_it_pools_the_last_step(caplog):
    model = XLSTMForSequenceClassification(tiny_config(num_labels=3, pad_token_id=None)).eval()
    with caplog.at_level(logging.WARNING, logger="xlstm_hf"):
        model(random_ids(2, 5))
    assert "pools the last step" in caplog.text


@pytest.mark.parametrize("family", ["neurips-mixed", "large-mixed"])
def test_nan_in_padded_inputs_embeds_touches_nothing_and_unmasked_nan_is_refused(family):
    torch.manual_seed(0)
    model = noisy(XLSTMModel(tiny_config(family, vocab_size=None, chunk_size=4)))
    embeds = torch.randn(2, 11, 32)
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[0, :3] = mask[1, 6] = 0  # left padding and a hole inside a chunk
    clean = model(inputs_embeds=embeds.masked_fill(~mask.bool()[..., None], 0.0), attention_mask=mask)
    poisoned = model(inputs_embeds=embeds.masked_fill(~mask.bool()[..., None], float("nan")), attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(poisoned.last_hidden_state[real], clean.last_hidden_state[real], rtol=0, atol=0)
    embeds[1, 6] = float("nan")
    with pytest.raises(ValueError, match="inputs_embeds holds NaN or inf at real"):
        model(inputs_embeds=embeds)


def test_seq2seq_base_model_is_its_encoder_and_loads_an_xlstm_model_checkpoint(tmp_path):
    config = tiny_config(decoder_start_token_id=1, bidirectional=False)
    torch.manual_seed(0)
    XLSTMModel(config).save_pretrained(tmp_path)
    seq2seq, info = XLSTMForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert seq2seq.base_model is seq2seq.encoder and seq2seq.get_encoder(modality="text") is seq2seq.encoder
    base = XLSTMModel.from_pretrained(tmp_path).state_dict()
    for name, value in seq2seq.encoder.state_dict().items():
        if name in base:
            assert torch.equal(value, base[name]), name
    assert not any(key.startswith("encoder.blocks.0.mixer.") for key in info["missing_keys"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_floating_inputs_embeds_of_any_dtype_are_cast_to_the_model(lm, dtype):
    embeds = lm.get_input_embeddings()(random_ids(2, 5))
    expected = lm(inputs_embeds=embeds.to(dtype).float()).logits
    torch.testing.assert_close(lm(inputs_embeds=embeds.to(dtype)).logits, expected, rtol=0, atol=0)


def test_classifier_past_values_of_any_floating_dtype():
    model = XLSTMForSequenceClassification(tiny_config(vocab_size=None, num_input_channels=3, num_labels=2)).eval()
    values = torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(model(past_values=values).logits, model(past_values=values.float()).logits)


def test_logits_to_keep_as_positions(lm):
    ids = random_ids(2, 9)
    logits = lm(ids).logits
    positions = torch.tensor([0, 4, 8])
    torch.testing.assert_close(lm(ids, logits_to_keep=positions).logits, logits[:, positions], rtol=0, atol=0)
    torch.testing.assert_close(lm(ids, logits_to_keep=2).logits, logits[:, -2:], rtol=0, atol=0)


def test_a_misspelt_config_key_warns_with_the_field_it_resembles(caplog):
    with caplog.at_level(logging.WARNING, logger="xlstm_hf"):
        config = XLSTMConfig(hiden_size=64, my_own_setting=3)
    assert "did you mean hidden_size" in caplog.text and "my_own_setting" not in caplog.text
    assert config.hidden_size == 768 and config.my_own_setting == 3  # kept, as transformers keeps unknown keys


def tiny_forecaster() -> XLSTMForTimeSeriesPrediction:
    torch.manual_seed(0)
    config = XLSTMConfig(hidden_size=32, num_hidden_layers=2, num_heads=2, chunk_size=4, num_input_channels=2,
                         context_length=32, prediction_length=8, patch_length=4, patch_stride=4)
    return noisy(XLSTMForTimeSeriesPrediction(config))


def test_forecaster_ignores_nan_at_unobserved_steps():
    model, values = tiny_forecaster(), torch.randn(2, 32, 2)
    observed = torch.ones_like(values)
    observed[0, 5] = observed[1, 20:23] = 0
    clean = model(past_values=values.masked_fill(observed == 0, 0.0), past_observed_mask=observed)
    poisoned = model(past_values=values.masked_fill(observed == 0, float("nan")), past_observed_mask=observed)
    torch.testing.assert_close(poisoned.prediction_outputs, clean.prediction_outputs, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_forecaster_takes_past_values_of_any_floating_dtype(dtype):
    model, values = tiny_forecaster(), torch.randn(2, 32, 2)
    expected = model(past_values=values.to(dtype).float()).prediction_outputs
    torch.testing.assert_close(model(past_values=values.to(dtype)).prediction_outputs, expected, rtol=0, atol=0)


def test_forecaster_refuses_bool_past_values_naming_them():
    with pytest.raises(TypeError, match="past_values"):
        tiny_forecaster()(past_values=torch.ones(2, 32, 2, dtype=torch.bool))
