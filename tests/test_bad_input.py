# ruff: noqa: E501  (the table keeps one case per line)
"""Bad input gets a ValueError or TypeError that names the argument and says what is expected, raised
before any heavy work; NaN or inf where a mask marks them missing or padded is allowed.

One case per line: (description, call on the tiny models of `models()`, exception type, regex that must
match the message and begins with the name of the argument at fault).
"""

import functools
import re
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

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

VOCAB, HIDDEN, B, T = 32, 16, 2, 5
NAN, INF = float("nan"), float("inf")


def tiny(**overrides) -> XLSTMConfig:
    """Two blocks (mLSTM, sLSTM) of width 16, vocabulary 32."""
    kwargs = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_heads=2, layer_types=["mlstm", "slstm"],
                  round_up_to_multiple_of=16, chunk_size=4, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  decoder_start_token_id=1)
    return XLSTMConfig(**{**kwargs, **overrides})


def time_series_config(**overrides) -> XLSTMConfig:
    """Two channels, context 16, horizon 4, patches of 4."""
    kwargs = dict(vocab_size=None, num_input_channels=2, context_length=16, prediction_length=4, patch_length=4,
                  patch_stride=4, layer_types=None)
    return tiny(**{**kwargs, **overrides})


@functools.cache
def models() -> SimpleNamespace:
    """The models and inputs the cases call (built once; no case changes them)."""
    torch.manual_seed(0)
    m = SimpleNamespace(ids=torch.randint(3, VOCAB, (B, T)), embeds=torch.randn(B, T, HIDDEN))
    m.lm = XLSTMForCausalLM(tiny()).eval()
    m.lm3 = XLSTMForCausalLM(tiny(num_hidden_layers=3, layer_types=None)).eval()
    m.lm_wide = XLSTMForCausalLM(tiny(hidden_size=2 * HIDDEN)).eval()
    m.base = XLSTMModel(tiny(vocab_size=None)).eval()
    m.encoder = XLSTMModel(tiny(bidirectional=True)).eval()
    m.s2s = XLSTMForSeq2SeqLM(tiny()).eval()
    m.sc = XLSTMForSequenceClassification(tiny(num_labels=3)).eval()
    m.regression = XLSTMForSequenceClassification(tiny(num_labels=1)).eval()
    m.tc = XLSTMForTokenClassification(tiny(num_labels=3, bidirectional=True)).eval()
    m.vsc = XLSTMForSequenceClassification(tiny(vocab_size=None, num_input_channels=3, num_labels=2)).eval()
    m.ts = XLSTMForTimeSeriesPrediction(time_series_config()).eval()
    m.past, m.future = torch.randn(B, 16, 2), torch.randn(B, 4, 2)
    m.series = torch.randn(B, T, 3)
    with torch.no_grad():
        m.cache = m.lm(m.ids, use_cache=True).cache
    return m


def with_nan(values: torch.Tensor, value: float = NAN) -> torch.Tensor:
    values = values.clone()
    values[0, 1, 0] = value
    return values


def ids(m, shift=0, dtype=torch.long):
    return (m.ids + shift).to(dtype)


def with_id(m, token_id: int) -> torch.Tensor:
    token_ids = m.ids.clone()
    token_ids[1, 2] = token_id
    return token_ids


BAD_INPUTS = [
    # ---- input_ids, inputs_embeds ----------------------------------------------------------------------
    ("ids rank 3", lambda m: m.lm(m.ids[..., None]), ValueError, r"input_ids has shape \(2, 5, 1\); expected \[batch, length\]"),
    ("ids rank 1", lambda m: m.lm(m.ids[0]), ValueError, r"input_ids has shape \(5,\); expected \[batch, length\]"),
    ("float ids", lambda m: m.lm(ids(m, dtype=torch.float32)), TypeError, r"input_ids has dtype torch.float32; .*long"),
    ("bool ids", lambda m: m.lm(m.ids > 5), TypeError, r"input_ids has dtype torch.bool; expected integer token ids"),
    ("ids as a list", lambda m: m.lm(m.ids.tolist()), TypeError, r"input_ids is a list; expected a torch.Tensor"),
    ("negative id", lambda m: m.lm(with_id(m, -1)), ValueError, r"input_ids holds the token id -1, outside \[0, 32\)"),
    ("id = vocab_size", lambda m: m.lm(with_id(m, VOCAB)), ValueError, r"input_ids holds the token id 32, outside \[0, 32\)"),
    ("empty batch", lambda m: m.lm(m.ids[:0]), ValueError, r"input_ids has shape \(0, 5\): an empty batch"),
    ("zero-length sequence", lambda m: m.lm(m.ids[:, :0]), ValueError, r"input_ids has shape \(2, 0\): .*zero-length"),
    ("ids and embeds", lambda m: m.lm(m.ids, inputs_embeds=m.embeds), ValueError, r"input_ids or inputs_embeds"),
    ("ids without vocabulary", lambda m: m.base(m.ids), ValueError, r"input_ids.*pass inputs_embeds instead|inputs_embeds instead of input_ids"),
    ("embeds rank 2", lambda m: m.lm(inputs_embeds=m.embeds[0]), ValueError, r"inputs_embeds has shape \(5, 16\); expected \[batch, length, hidden_size=16\]"),
    ("embeds hidden size", lambda m: m.base(inputs_embeds=torch.randn(B, T, 17)), ValueError, r"inputs_embeds has shape \(2, 5, 17\); expected .*hidden_size=16"),
    ("integer embeds", lambda m: m.base(inputs_embeds=m.embeds.long()), TypeError, r"inputs_embeds has dtype torch.int64; expected floating-point"),
    ("empty embeds", lambda m: m.base(inputs_embeds=m.embeds[:, :0]), ValueError, r"inputs_embeds has shape \(2, 0, 16\): an empty batch or a zero-length"),
    # ---- attention_mask ----------------------------------------------------------------------------
    ("mask rank 1", lambda m: m.lm(m.ids, attention_mask=torch.ones(T)), ValueError, r"attention_mask has shape \(5,\); expected \[batch, length\] = \[2, >= 5\]"),
    ("mask batch", lambda m: m.lm(m.ids, attention_mask=torch.ones(3, T)), ValueError, r"attention_mask has shape \(3, 5\); expected .*\[2, >= 5\]"),
    ("mask too short", lambda m: m.lm(m.ids, attention_mask=torch.ones(B, 4)), ValueError, r"attention_mask has shape \(2, 4\)"),
    ("mask value 2", lambda m: m.lm(m.ids, attention_mask=torch.full((B, T), 2)), ValueError, r"attention_mask holds values other than 0 and 1"),
    ("mask value 0.5", lambda m: m.lm(m.ids, attention_mask=torch.full((B, T), 0.5)), ValueError, r"attention_mask holds values other than 0 and 1"),
    ("mask as a list", lambda m: m.lm(m.ids, attention_mask=[[1] * T] * B), TypeError, r"attention_mask is a list; expected a torch.Tensor"),
    # ---- cache -------------------------------------------------------------------------------------
    ("cache of 2 blocks in a 3-block model", lambda m: m.lm3(m.ids, cache=m.cache), ValueError, r"cache must be an XLSTMCache of this model \(3 blocks\), got XLSTMCache with 2 blocks"),
    ("cache of a model of another width", lambda m: m.lm(m.ids, cache=m.lm_wide(m.ids, use_cache=True).cache), ValueError, r"cache was written by a model whose blocks have other sizes"),
    ("cache of another batch size", lambda m: m.lm(m.ids[:1], cache=m.cache), ValueError, r"cache holds a batch of 2 but the input has 1 rows"),
    ("cache of another type", lambda m: m.lm(m.ids, cache=(None, None)), ValueError, r"cache must be an XLSTMCache .* got tuple"),
    ("cache to a bidirectional model", lambda m: m.encoder(m.ids, use_cache=True), ValueError, r"cache.*bidirectional|bidirectional.*cache"),
    # ---- labels of the causal LM --------------------------------------------------------------------
    ("LM labels shape", lambda m: m.lm(m.ids, labels=m.ids[:, :4]), ValueError, r"labels has shape \(2, 4\); expected .*\[2, 5\]"),
    ("LM labels float", lambda m: m.lm(m.ids, labels=m.ids.float()), TypeError, r"labels has dtype torch.float32; expected token ids of dtype torch.long"),
    ("LM labels >= vocab", lambda m: m.lm(m.ids, labels=ids(m, VOCAB)), ValueError, r"labels holds the token id \d+, outside \[0, 32\)"),
    ("LM labels -5", lambda m: m.lm(m.ids, labels=torch.full((B, T), -5)), ValueError, r"labels holds the token id -5, .*or -100 \(ignored\)"),
    # ---- generate ------------------------------------------------------------------------------------
    ("max_new_tokens 1.5", lambda m: m.lm.generate(m.ids, max_new_tokens=1.5), TypeError, r"max_new_tokens=1.5 is a float; expected a positive integer"),
    ("max_new_tokens 0", lambda m: m.lm.generate(m.ids, max_new_tokens=0), ValueError, r"max_new_tokens=0 is not positive"),
    ("max_new_tokens -3", lambda m: m.lm.generate(m.ids, max_new_tokens=-3), ValueError, r"max_new_tokens=-3 is not positive"),
    ("max_length '9'", lambda m: m.lm.generate(m.ids, max_length="9"), TypeError, r"max_length='9' is a str; expected a positive integer"),
    ("generate prompt rank 3", lambda m: m.lm.generate(m.ids[None], max_new_tokens=2), ValueError, r"input_ids has shape \(1, 2, 5\)"),
    ("generate prompt outside vocab", lambda m: m.lm.generate(ids(m, VOCAB), max_new_tokens=2), ValueError, r"input_ids holds the token id \d+, outside \[0, 32\)"),
    ("generate empty prompt", lambda m: m.lm.generate(m.ids[:, :0], max_new_tokens=2), ValueError, r"input_ids has shape \(2, 0\)"),
    ("seq2seq max_new_tokens 2.0", lambda m: m.s2s.generate(m.ids, max_new_tokens=2.0), TypeError, r"max_new_tokens=2.0 is a float"),
    # ---- XLSTMForSeq2SeqLM -------------------------------------------------------------------------
    ("no decoder_input_ids nor labels", lambda m: m.s2s(m.ids), ValueError, r"decoder_input_ids is missing; pass decoder_input_ids"),
    ("decoder_input_ids rank 3", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids[None]), ValueError, r"decoder_input_ids has shape \(1, 2, 5\)"),
    ("float decoder_input_ids", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids.float()), TypeError, r"decoder_input_ids has dtype torch.float32"),
    ("decoder_input_ids outside vocab", lambda m: m.s2s(m.ids, decoder_input_ids=ids(m, -VOCAB)), ValueError, r"decoder_input_ids holds the token id -\d+"),
    ("decoder_input_ids batch", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids[:1]), ValueError, r"decoder_input_ids has 1 rows but the source has 2"),
    ("decoder ids and embeds", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids, decoder_inputs_embeds=m.embeds), ValueError, r"decoder_input_ids or decoder_inputs_embeds, not both"),
    ("decoder_inputs_embeds hidden size", lambda m: m.s2s(m.ids, decoder_inputs_embeds=torch.randn(B, T, 8)), ValueError, r"decoder_inputs_embeds has shape \(2, 5, 8\)"),
    ("decoder_attention_mask shape", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids, decoder_attention_mask=torch.ones(B, 3)), ValueError, r"decoder_attention_mask has shape \(2, 3\)"),
    ("source mask length", lambda m: m.s2s(m.ids, attention_mask=torch.ones(B, 7), decoder_input_ids=m.ids), ValueError, r"attention_mask has shape \(2, 7\); expected \[batch, length\] = \[2, 5\]"),
    ("source mask vs encoder_outputs", lambda m: m.s2s(encoder_outputs=(m.embeds,), attention_mask=torch.ones(1, T), decoder_input_ids=m.ids), ValueError, r"attention_mask has shape \(1, 5\)"),
    ("seq2seq labels float", lambda m: m.s2s(m.ids, labels=m.ids.float()), TypeError, r"labels has dtype torch.float32; expected token ids of dtype torch.long"),
    ("seq2seq labels vs decoder ids", lambda m: m.s2s(m.ids, decoder_input_ids=m.ids, labels=m.ids[:, :3]), ValueError, r"labels has shape \(2, 3\); expected the shape of decoder_input_ids"),
    ("seq2seq labels batch", lambda m: m.s2s(m.ids, labels=m.ids[:1]), ValueError, r"labels has 1 rows but the source has 2"),
    ("seq2seq labels rank 3", lambda m: m.s2s(m.ids, labels=m.ids[None]), ValueError, r"labels has shape \(1, 2, 5\); expected \[batch, target length\]"),
    ("seq2seq labels outside vocab", lambda m: m.s2s(m.ids, labels=ids(m, VOCAB)), ValueError, r"labels holds the token id \d+, outside \[0, 32\)"),
    # ---- XLSTMForSequenceClassification -------------------------------------------------------------
    ("class labels [B, T]", lambda m: m.sc(m.ids, labels=torch.zeros(B, T, dtype=torch.long)), ValueError, r"labels has shape \(2, 5\); expected \[batch\] class ids"),
    ("class labels batch", lambda m: m.sc(m.ids, labels=torch.zeros(3, dtype=torch.long)), ValueError, r"labels has shape \(3,\)"),
    ("class id = num_labels", lambda m: m.sc(m.ids, labels=torch.tensor([0, 3])), ValueError, r"labels holds the class id 3, outside \[0, 3\)"),
    ("float labels [B] read as multi-label", lambda m: m.sc(m.ids, labels=torch.zeros(B)), ValueError, r"labels has shape \(2,\); expected multi-label targets \[batch, num_labels\] = \[2, 3\]"),
    ("integer regression targets", lambda m: m.regression(m.ids, labels=torch.zeros(B, dtype=torch.long)), TypeError, r"labels has dtype torch.int64; expected floating-point regression targets"),
    ("a row of padding only", lambda m: m.sc(m.ids, attention_mask=torch.tensor([[1] * T, [0] * T])), ValueError, r"attention_mask marks every step of row\(s\) \[1\] as padding"),
    ("num_labels 0", lambda m: XLSTMForSequenceClassification(tiny(num_labels=0)), ValueError, r"num_labels=0; a classifier needs config.num_labels >= 1"),
    # ---- XLSTMForTokenClassification ---------------------------------------------------------------
    ("tag labels [B]", lambda m: m.tc(m.ids, labels=torch.zeros(B, dtype=torch.long)), ValueError, r"labels has shape \(2,\); expected \[batch, length\] class ids = \[2, 5\]"),
    ("tag labels float", lambda m: m.tc(m.ids, labels=torch.zeros(B, T)), TypeError, r"labels has dtype torch.float32; expected class ids of dtype torch.long"),
    ("tag id = num_labels", lambda m: m.tc(m.ids, labels=torch.full((B, T), 3)), ValueError, r"labels holds the class id 3, outside \[0, 3\)"),
    # ---- continuous sequences of a classifier without vocabulary ------------------------------------
    ("past_values channels", lambda m: m.vsc(past_values=torch.randn(B, T, 4)), ValueError, r"past_values has shape \(2, 5, 4\); expected \[batch, length, num_input_channels=3\]"),
    ("past_values empty", lambda m: m.vsc(past_values=m.series[:0]), ValueError, r"past_values has shape \(0, 5, 3\)"),
    ("past_values NaN unmasked", lambda m: m.vsc(past_values=with_nan(m.series)), ValueError, r"past_values holds NaN or inf at real \(unmasked\) positions"),
    ("past_values inf at a real step", lambda m: m.vsc(past_values=with_nan(m.series, INF), attention_mask=torch.ones(B, T)), ValueError, r"past_values holds NaN or inf"),
    ("past_values as a list", lambda m: m.vsc(past_values=m.series.tolist()), TypeError, r"past_values is a list"),
    ("past_values and inputs_embeds", lambda m: m.vsc(past_values=m.series, inputs_embeds=m.embeds), ValueError, r"past_values or inputs_embeds, not both"),
    ("past_values with a vocabulary", lambda m: m.sc(past_values=m.series), ValueError, r"past_values need a model without vocabulary"),
    # ---- XLSTMForTimeSeriesPrediction --------------------------------------------------------------
    ("series rank 2", lambda m: m.ts(m.past[0]), ValueError, r"past_values has shape \[16, 2\]; expected \[batch, length, num_input_channels\]"),
    ("series channels", lambda m: m.ts(torch.randn(B, 16, 3)), ValueError, r"past_values has shape \[2, 16, 3\]; .*num_input_channels = 2"),
    ("series shorter than a patch", lambda m: m.ts(m.past[:, :3]), ValueError, r"past_values has 3 time steps, fewer than patch_length = 4"),
    ("series empty batch", lambda m: m.ts(m.past[:0]), ValueError, r"past_values has shape \[0, 16, 2\]; .*at least one row"),
    ("series as a list", lambda m: m.ts(m.past.tolist()), TypeError, r"past_values is a list"),
    ("past_observed_mask shape", lambda m: m.ts(m.past, past_observed_mask=torch.ones(B, 16)), ValueError, r"past_observed_mask has shape \[2, 16\] but past_values has shape \[2, 16, 2\]"),
    ("past_observed_mask value 2", lambda m: m.ts(m.past, past_observed_mask=torch.full((B, 16, 2), 2)), ValueError, r"past_observed_mask holds values other than 0 and 1"),
    ("past_values NaN observed", lambda m: m.ts(with_nan(m.past)), ValueError, r"past_values holds NaN or inf at observed positions; .*0 in past_observed_mask"),
    ("past_values -inf observed", lambda m: m.ts(with_nan(m.past, -INF)), ValueError, r"past_values holds NaN or inf at observed positions"),
    ("future_values horizon", lambda m: m.ts(m.past, future_values=m.future[:, :3]), ValueError, r"future_values has shape \[2, 3, 2\]; expected .* = \[2, 4, 2\]"),
    ("future_values batch", lambda m: m.ts(m.past, future_values=m.future[:1]), ValueError, r"future_values has shape \[1, 4, 2\]"),
    ("future_values NaN observed", lambda m: m.ts(m.past, future_values=with_nan(m.future)), ValueError, r"future_values holds NaN or inf at observed positions"),
    ("future_observed_mask shape", lambda m: m.ts(m.past, future_values=m.future, future_observed_mask=torch.ones(B, 4)), ValueError, r"future_observed_mask has shape \[2, 4\] but future_values"),
    ("forecast horizon 0", lambda m: m.ts.generate(m.past, prediction_length=0), ValueError, r"prediction_length=0 is not positive"),
    ("forecast horizon 1.5", lambda m: m.ts.generate(m.past, prediction_length=1.5), TypeError, r"prediction_length=1.5 is a float"),
    ("forecast beyond a stride", lambda m: XLSTMForTimeSeriesPrediction(time_series_config(prediction_length=2)).generate(m.past, prediction_length=6), ValueError, r"prediction_length=6 exceeds config.prediction_length=2"),
    # ---- XLSTMConfig -------------------------------------------------------------------------------
    ("heads not dividing the mLSTM width", lambda m: tiny(num_heads=3), ValueError, r"num_heads=3 does not divide the mLSTM inner size"),
    ("sLSTM heads not dividing", lambda m: tiny(slstm_num_heads=3), ValueError, r"slstm_num_heads=3 does not divide hidden_size=16"),
    ("unknown layer type", lambda m: tiny(layer_types=["mlstm", "gru"]), ValueError, r"layer_types\[1\]='gru' is not a block type"),
    ("layer_types length", lambda m: tiny(num_hidden_layers=3), ValueError, r"layer_types has 2 entries but num_hidden_layers=3"),
    ("hidden_size 0", lambda m: XLSTMConfig(hidden_size=0), ValueError, r"hidden_size must be a positive integer, got 0"),
    ("num_hidden_layers -1", lambda m: XLSTMConfig(num_hidden_layers=-1), ValueError, r"num_hidden_layers must be a positive integer"),
    ("vocab_size 0", lambda m: XLSTMConfig(vocab_size=0), ValueError, r"vocab_size must be a positive integer or None"),
    ("prediction_length 0", lambda m: XLSTMConfig(prediction_length=0), ValueError, r"prediction_length must be a positive integer, got 0"),
    ("block_family unknown", lambda m: XLSTMConfig(block_family="small"), ValueError, r"block_family='small' is unknown; use one of"),
    ("hidden_size '64'", lambda m: XLSTMConfig(hidden_size="64"), TypeError, r"hidden_size='64' does not have the field's type int"),
    ("num_heads 2.0", lambda m: XLSTMConfig(num_heads=2.0), TypeError, r"num_heads=2.0 does not have the field's type int"),
    ("num_blocks '3' (alias)", lambda m: XLSTMConfig(num_blocks="3"), TypeError, r"num_hidden_layers='3' does not have the field's type int"),
    ("layer_types a string", lambda m: XLSTMConfig(num_hidden_layers=1, layer_types="mlstm"), TypeError, r"layer_types='mlstm' does not have the field's type list\[str\]"),
    ("block_family None", lambda m: XLSTMConfig(block_family=None), TypeError, r"block_family=None does not have the field's type str"),
    ("dropout '0.1'", lambda m: XLSTMConfig(dropout="0.1"), TypeError, r"dropout='0.1' does not have the field's type float \| int"),
]


@pytest.mark.parametrize(("description", "call", "error", "pattern"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_naming_the_argument(description, call, error, pattern):
    assert re.match(r"\w", pattern), "the pattern must begin with the argument's name"
    with torch.no_grad(), pytest.raises(error, match=pattern):
        call(models())


def test_value_checks_come_before_the_blocks(monkeypatch):
    """A bad id is reported before any block runs."""
    m = models()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a block ran before the input was checked")

    monkeypatch.setattr(type(m.lm.backbone.blocks[0]), "forward", must_not_run)
    with pytest.raises(ValueError, match="input_ids holds the token id"):
        m.lm(ids(m, VOCAB))
    with pytest.raises(ValueError, match="decoder_input_ids has 1 rows"):  # the encoder would run first
        m.s2s(m.ids, decoder_input_ids=m.ids[:1])


# ---- what is allowed ---------------------------------------------------------------------------------


def test_num_blocks_alias_sets_the_number_of_blocks():
    config = XLSTMConfig(num_blocks=3)
    assert config.num_hidden_layers == config.num_blocks == 3
    assert config.layer_types == ["mlstm"] * 3


def test_ignored_labels_and_int32_ids_are_accepted():
    m = models()
    labels = m.ids.masked_fill(torch.rand(B, T) < 0.5, -100)
    with torch.no_grad():
        assert torch.isfinite(m.lm(m.ids.int(), labels=labels).loss)
        assert m.lm.generate(m.ids, max_new_tokens=2, do_sample=False).shape == (B, T + 2)


def test_nan_and_inf_where_masked_give_finite_forecasts_and_loss():
    m = models()
    observed = torch.rand(B, 16, 2) > 0.2
    past = m.past.masked_fill(~observed, NAN)
    past[0, 0, 0], observed[0, 0, 0] = INF, False
    future_observed = torch.rand(B, 4, 2) > 0.3
    future = m.future.masked_fill(~future_observed, NAN)
    with torch.no_grad():
        out = m.ts(past, past_observed_mask=observed.int(), future_values=future, future_observed_mask=future_observed)
        clean = m.ts(past.nan_to_num(0.0, 0.0, 0.0), past_observed_mask=observed, future_values=future.nan_to_num(0.0),
                     future_observed_mask=future_observed)
        paths = m.ts.generate(past, past_observed_mask=observed).sequences
    assert torch.isfinite(out.loss) and torch.isfinite(out.prediction_outputs).all() and torch.isfinite(paths).all()
    assert_close(out.prediction_outputs, clean.prediction_outputs)
    assert_close(out.loss, clean.loss)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_nan_at_padded_steps_of_continuous_sequences_is_ignored(bidirectional):
    torch.manual_seed(1)
    config = tiny(vocab_size=None, num_input_channels=3, num_labels=2, bidirectional=bidirectional)
    model = XLSTMForSequenceClassification(config).eval()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :2], mask[1, 4:] = 0, 0  # left padding, right padding
    series = torch.randn(B, T, 3)
    with torch.no_grad():
        reference = model(past_values=series, attention_mask=mask).logits
        logits = model(past_values=series.masked_fill(~mask.bool()[..., None], NAN), attention_mask=mask).logits
    assert torch.isfinite(logits).all()
    assert_close(logits, reference)
