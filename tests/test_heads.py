"""The task heads: XLSTMForSequenceClassification, XLSTMForTokenClassification and XLSTMForSeq2SeqLM.

Tiny random models of both block families, each with an sLSTM block, causal and bidirectional, with a
chunk size of 8 so that most inputs span several chunks. Weights are perturbed away from their initial
values. References are plain full forwards without a cache, or losses computed with torch.
"""

import pytest
import torch
import torch.nn.functional as F
from padding import pad_batch
from references import beam_search_reference
from safetensors.torch import load_file
from tiny_models import PAD, VOCAB, noisy, tiny_config
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from torch.testing import assert_close
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerFast,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
)
from transformers.models.bart.modeling_bart import shift_tokens_right

from xlstm_hf import (
    XLSTMCache,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTokenClassification,
    XLSTMModel,
)

BOS, EOS = 1, 2
CHUNK = 8
TOL = {"rtol": 1e-5, "atol": 1e-5}

FAMILIES = {"neurips": "neurips-mixed", "large": "large-mixed"}  # patterns of tests/tiny_models.py
DIRECTIONS = {"causal": {}, "bidirectional": {"bidirectional": True}}
ENCODER_LAYER_TYPES = ["slstm", "mlstm"]  # the seq2seq encoder differs from the decoder on purpose


def make_model(model_class, family: str = "neurips", **overrides):
    """A random model in eval mode, every parameter moved by N(0, 0.05) noise."""
    torch.manual_seed(0)
    config = tiny_config(FAMILIES[family], bos_token_id=BOS, decoder_start_token_id=BOS, **overrides)
    return noisy(model_class(config))


def random_ids(*shape: int, seed: int = 0) -> torch.Tensor:
    """Token ids that are never a special token."""
    return torch.randint(3, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def make_seq2seq(family: str = "neurips", **overrides) -> XLSTMForSeq2SeqLM:
    return make_model(XLSTMForSeq2SeqLM, family, encoder_layer_types=ENCODER_LAYER_TYPES, **overrides)




def random_values(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def prompts_of(*lengths: int) -> list[torch.Tensor]:
    """Random token sequences of the given lengths."""
    return [random_ids(length, seed=seed) for seed, length in enumerate(lengths)]


def loss_and_gradients(model, **inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    grads = {name: param.grad for name, param in model.named_parameters()}
    assert all(grad is not None for grad in grads.values()), [name for name, grad in grads.items() if grad is None]
    return loss.detach(), {name: grad.clone() for name, grad in grads.items()}


pytestmark = pytest.mark.usefixtures("single_thread")


MODEL_PARAMS = [(family, direction) for family in FAMILIES for direction in DIRECTIONS]


def model_id(param: tuple[str, str]) -> str:
    return "-".join(param)


@pytest.fixture(scope="module", params=MODEL_PARAMS, ids=model_id)
def sequence_classifier(request) -> XLSTMForSequenceClassification:
    family, direction = request.param
    return make_model(XLSTMForSequenceClassification, family, num_labels=3, **DIRECTIONS[direction])


@pytest.fixture(scope="module", params=MODEL_PARAMS, ids=model_id)
def token_classifier(request) -> XLSTMForTokenClassification:
    family, direction = request.param
    return make_model(XLSTMForTokenClassification, family, num_labels=4, **DIRECTIONS[direction])


@pytest.fixture(scope="module", params=list(DIRECTIONS))
def values_classifier(request) -> XLSTMForSequenceClassification:
    """A classifier of continuous sequences [B, T, 3] (no vocabulary)."""
    return make_model(
        XLSTMForSequenceClassification, vocab_size=None, num_input_channels=3, num_labels=2,
        **DIRECTIONS[request.param],
    )


@pytest.fixture(scope="module", params=list(FAMILIES))
def seq2seq(request) -> XLSTMForSeq2SeqLM:
    """Shared eval-mode encoder-decoder without eos, so that every hypothesis runs to its maximum length."""
    return make_seq2seq(request.param)


# ---- 1. sequence classification: padding and pooling -----------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_sequence_classification_of_padded_batch_matches_each_sequence_alone(sequence_classifier, side):
    prompts = prompts_of(5, 12, 19)
    ids, mask = pad_batch(prompts, side)
    logits = sequence_classifier(ids, attention_mask=mask).logits
    alone = torch.cat([sequence_classifier(prompt[None]).logits for prompt in prompts])
    assert logits.shape == (3, 3)
    assert_close(logits, alone, **TOL)


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_sequence_classification_pools_last_and_first_real_step(sequence_classifier, side):
    """Causal: the output at the last real step; bidirectional: that and the output at the first real step."""
    ids, mask = pad_batch(prompts_of(5, 12, 19), side)
    out = sequence_classifier(ids, attention_mask=mask, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    rows = torch.arange(len(ids))
    first, last = mask.argmax(1), mask.shape[1] - 1 - mask.flip(1).argmax(1)
    pooled = hidden[rows, last]
    if sequence_classifier.config.bidirectional:
        pooled = torch.cat([pooled, hidden[rows, first]], dim=-1)
    assert pooled.shape[-1] == sequence_classifier.score.in_features
    assert_close(out.logits, sequence_classifier.score(pooled), **TOL)


# ---- 2. sequence classification: problem types -----------------------------------------------------

PROBLEMS = {
    "single_label_classification": (
        3, torch.tensor([0, 2]), F.cross_entropy,
    ),
    "multi_label_classification": (
        3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), F.binary_cross_entropy_with_logits,
    ),
    "regression": (
        1, torch.tensor([0.5, -1.5]), lambda logits, labels: F.mse_loss(logits.squeeze(-1), labels),
    ),
}


@pytest.mark.parametrize("problem_type", list(PROBLEMS))
@pytest.mark.parametrize("direction", list(DIRECTIONS))
@torch.no_grad()
def test_sequence_classification_loss_follows_problem_type(problem_type, direction):
    """`problem_type` is inferred from num_labels and the labels' dtype, as in transformers."""
    num_labels, labels, loss_fn = PROBLEMS[problem_type]
    model = make_model(XLSTMForSequenceClassification, num_labels=num_labels, **DIRECTIONS[direction])
    ids, mask = pad_batch(prompts_of(5, 12))
    out = model(ids, attention_mask=mask, labels=labels)
    assert model.config.problem_type == problem_type
    assert out.logits.shape == (2, num_labels)
    assert_close(out.loss, loss_fn(out.logits, labels), **TOL)


# ---- 3. continuous inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_past_values_of_padded_batch_match_each_sequence_alone(values_classifier, side):
    sequences = [random_values(length, 3, seed=length) for length in (5, 12, 19)]
    values, mask = pad_batch(sequences, side)
    logits = values_classifier(past_values=values, attention_mask=mask).logits
    alone = torch.cat([values_classifier(past_values=sequence[None]).logits for sequence in sequences])
    assert logits.shape == (3, 2)
    assert_close(logits, alone, **TOL)


def test_model_without_vocabulary_rejects_input_ids(values_classifier):
    with pytest.raises(ValueError, match="input_ids"):
        values_classifier(input_ids=random_ids(2, 6))


@pytest.mark.parametrize("shape", [(2, 6, 4), (2, 6), (2, 6, 3, 1)])
def test_past_values_of_wrong_shape_raise(values_classifier, shape):
    with pytest.raises(ValueError, match="past_values"):
        values_classifier(past_values=torch.zeros(shape))


def test_past_values_need_model_without_vocabulary():
    model = make_model(XLSTMForSequenceClassification, num_labels=2)
    with pytest.raises(ValueError, match="past_values"):
        model(past_values=random_values(2, 6, 3))


@torch.no_grad()
def test_token_classification_of_past_values():
    model = make_model(XLSTMForTokenClassification, vocab_size=None, num_input_channels=3, num_labels=4)
    assert model(past_values=random_values(2, 6, 3)).logits.shape == (2, 6, 4)


# ---- 4. sequence classification with the Trainer ---------------------------------------------------


def contains_token_dataset(size: int, length: int = 8, token: int = 5) -> list[dict[str, torch.Tensor]]:
    """Sequences over the tokens 3 to 10, labelled by whether `token` occurs; half of them hold it."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for index in range(size):
        ids = torch.randint(3, 11, (length,), generator=generator)
        ids[ids == token] = token + 1
        label = index % 2
        if label:
            ids[torch.randint(length, (1,), generator=generator)] = token
        examples.append({"input_ids": ids, "labels": torch.tensor(label)})
    return examples


def assert_trainer_halves_the_loss(model, dataset, tmp_path):
    """40 Trainer steps on `dataset` bring its loss below half of what it was."""
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, per_device_eval_batch_size=64, max_steps=40,
        learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset)
    loss_before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < 0.5 * loss_before


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_trainer_lowers_sequence_classification_loss(direction, tmp_path):
    model = make_model(XLSTMForSequenceClassification, num_labels=2, **DIRECTIONS[direction])
    assert_trainer_halves_the_loss(model, contains_token_dataset(64), tmp_path)


# ---- 5. token classification -----------------------------------------------------------------------


@torch.no_grad()
def test_token_classification_loss_ignores_minus_100(token_classifier):
    ids, mask = pad_batch(prompts_of(5, 12), side="right")
    labels = torch.randint(0, 4, ids.shape, generator=torch.Generator().manual_seed(1))
    labels[mask == 0] = -100
    out = token_classifier(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 12, 4)
    expected = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert_close(out.loss, expected, **TOL)


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_token_classification_of_padded_batch_matches_each_sequence_alone(token_classifier, side):
    prompts = prompts_of(5, 12, 19)
    ids, mask = pad_batch(prompts, side)
    logits = token_classifier(ids, attention_mask=mask).logits
    for row, prompt in enumerate(prompts):
        assert_close(logits[row][mask[row].bool()], token_classifier(prompt[None]).logits[0], **TOL)


def next_token_tagging_dataset(size: int, length: int = 8, token: int = 5) -> list[dict[str, torch.Tensor]]:
    """Sequences over the tokens 3 to 10, each step tagged by whether the NEXT token is `token`: a task
    that needs the backward direction."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(size):
        ids = torch.randint(3, 11, (length,), generator=generator)
        labels = torch.zeros(length, dtype=torch.long)
        labels[:-1] = (ids[1:] == token).long()
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def test_trainer_lowers_token_classification_loss(tmp_path):
    model = make_model(XLSTMForTokenClassification, num_labels=2, **DIRECTIONS["bidirectional"])
    assert_trainer_halves_the_loss(model, next_token_tagging_dataset(64), tmp_path)


@torch.no_grad()
def test_token_classification_reads_future_tokens_only_when_bidirectional(token_classifier):
    ids = random_ids(1, 16)
    changed = ids.clone()
    changed[0, 12] = 3 if ids[0, 12] != 3 else 4
    earlier, earlier_changed = token_classifier(ids).logits[0, :12], token_classifier(changed).logits[0, :12]
    if token_classifier.config.bidirectional:
        assert not torch.allclose(earlier, earlier_changed, atol=1e-4)
    else:
        assert_close(earlier, earlier_changed, **TOL)


# ---- 6. seq2seq: labels, loss, encoder -------------------------------------------------------------


def seq2seq_batch(side: str = "right") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A padded source batch of three rows and their targets [3, 6] (last one padded with -100)."""
    source, mask = pad_batch(prompts_of(5, 12, 19), side)
    labels = random_ids(3, 6, seed=9)
    labels[2, 4:] = -100
    return source, mask, labels


def test_seq2seq_structure():
    model = make_seq2seq()
    assert model.config.is_encoder_decoder
    assert model.get_encoder() is model.encoder and model.get_decoder() is model.decoder
    assert model.encoder.config.bidirectional and not model.decoder.config.bidirectional
    assert len(model.encoder.blocks) == len(ENCODER_LAYER_TYPES) and len(model.decoder.blocks) == 3
    assert all(block.cross_attention is not None for block in model.decoder.blocks)
    assert model.decoder.get_input_embeddings() is None  # the decoder reads the encoder's embedding


def test_decoder_input_ids_are_labels_shifted_right(seq2seq):
    _, _, labels = seq2seq_batch()
    decoder_input_ids = seq2seq.prepare_decoder_input_ids_from_labels(labels)
    assert torch.equal(decoder_input_ids, shift_tokens_right(labels, PAD, BOS))
    assert torch.equal(decoder_input_ids[:, 0], torch.full((3,), BOS))
    assert torch.equal(decoder_input_ids[2, 5:], torch.full((1,), PAD))  # -100 becomes padding


@torch.no_grad()
def test_seq2seq_loss_is_cross_entropy_of_logits_and_labels_without_shift(seq2seq):
    source, mask, labels = seq2seq_batch()
    out = seq2seq(source, attention_mask=mask, labels=labels)
    decoder_input_ids = shift_tokens_right(labels, PAD, BOS)
    assert_close(out.logits, seq2seq(source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits, **TOL)
    assert out.logits.shape == (3, 6, VOCAB)
    expected = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert_close(out.loss, expected, **TOL)


@torch.no_grad()
def test_decoder_embeds_targets_with_the_shared_embedding(seq2seq):
    source, mask, labels = seq2seq_batch()
    decoder_input_ids = shift_tokens_right(labels, PAD, BOS)
    embedded = seq2seq(
        source, attention_mask=mask, decoder_inputs_embeds=seq2seq.get_input_embeddings()(decoder_input_ids)
    ).logits
    assert_close(embedded, seq2seq(source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits, **TOL)


@torch.no_grad()
def test_encoder_outputs_from_get_encoder_replace_the_source(seq2seq):
    source, mask, labels = seq2seq_batch()
    decoder_input_ids = shift_tokens_right(labels, PAD, BOS)
    encoder_outputs = seq2seq.get_encoder()(source, attention_mask=mask)
    logits = seq2seq(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    assert_close(logits, seq2seq(source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits, **TOL)


@torch.no_grad()
def test_generate_takes_the_source_as_main_input(seq2seq):
    source, mask, _ = seq2seq_batch()
    generated = seq2seq.generate(**{seq2seq.main_input_name: source}, attention_mask=mask, max_new_tokens=4)
    assert generated.shape == (3, 5)
    assert torch.equal(generated[:, 0], torch.full((3,), BOS))


# ---- 7. seq2seq: source padding --------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_padded_source_batch_gives_each_row_its_own_decoder_logits(seq2seq, side):
    prompts = prompts_of(5, 12, 19)
    source, mask = pad_batch(prompts, side)
    decoder_input_ids = random_ids(3, 10, seed=5)
    logits = seq2seq(source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    for row, prompt in enumerate(prompts):
        alone = seq2seq(prompt[None], decoder_input_ids=decoder_input_ids[row : row + 1]).logits
        assert_close(logits[row], alone[0], **TOL)


@torch.no_grad()
def test_source_attention_mask_is_not_ignored(seq2seq):
    """Guards the padding test itself: without the mask the padded row does change."""
    prompts = prompts_of(5, 12)
    source, _ = pad_batch(prompts, side="right")
    decoder_input_ids = random_ids(1, 4, seed=5)
    padded = seq2seq(source[:1], decoder_input_ids=decoder_input_ids).logits
    assert not torch.allclose(padded, seq2seq(prompts[0][None], decoder_input_ids=decoder_input_ids).logits, atol=1e-3)


# ---- 8. seq2seq: cached decoding -------------------------------------------------------------------


@torch.no_grad()
def test_decoding_step_by_step_with_cache_matches_full_forward(seq2seq):
    source, mask, _ = seq2seq_batch(side="left")
    decoder_input_ids = random_ids(3, 12, seed=5)  # longer than a chunk
    encoder_outputs = seq2seq.get_encoder()(source, attention_mask=mask)
    full = seq2seq(
        encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=decoder_input_ids, use_cache=False
    ).logits
    cache, logits = None, []
    for step in decoder_input_ids.split(1, dim=1):
        out = seq2seq(
            encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=step, cache=cache, use_cache=True
        )
        cache = out.cache
        logits.append(out.logits)
    assert isinstance(cache, XLSTMCache) and cache.get_seq_length() == 12
    assert_close(torch.cat(logits, dim=1), full, **TOL)


# ---- 9. seq2seq: generate --------------------------------------------------------------------------


def greedy_reference(model: XLSTMForSeq2SeqLM, source: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding of one unpadded source with full forwards without a cache: [1 + steps]."""
    tokens = torch.tensor([[BOS]])
    for _ in range(steps):
        logits = model(source[None], decoder_input_ids=tokens, use_cache=False).logits[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens[0]


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_greedy_generate_of_padded_source_batch_matches_manual_greedy(seq2seq, side):
    prompts = prompts_of(5, 12, 19)
    source, mask = pad_batch(prompts, side)
    generated = seq2seq.generate(source, attention_mask=mask, max_new_tokens=8, do_sample=False)
    for row, prompt in enumerate(prompts):
        assert torch.equal(generated[row], greedy_reference(seq2seq, prompt, 8))


@torch.no_grad()
def test_sampling_with_fixed_seed_is_reproducible(seq2seq):
    source, mask, _ = seq2seq_batch()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(seq2seq.generate(source, attention_mask=mask, do_sample=True, max_new_tokens=8))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (3, 9) and bool(((runs[0] >= 0) & (runs[0] < VOCAB)).all())


@torch.no_grad()
def test_beam_search_matches_manual_beam_search(seq2seq):
    assert seq2seq.generation_config.eos_token_id is None  # all beams run to the same length
    source, mask, _ = seq2seq_batch()
    out = seq2seq.generate(
        source, attention_mask=mask, num_beams=3, do_sample=False, max_new_tokens=6, num_return_sequences=3,
        output_scores=True, return_dict_in_generate=True,
    )
    assert out.sequences.shape == (9, 7)
    for row in range(3):
        def next_logits(tokens, row=row):
            return seq2seq(source[row][None], attention_mask=mask[row][None], decoder_input_ids=tokens[None],
                           use_cache=False).logits[0, -1]

        reference = beam_search_reference(next_logits, torch.tensor([BOS]), num_beams=3, steps=6)
        for rank, (tokens, score) in enumerate(reference):
            index = 3 * row + rank
            assert torch.equal(out.sequences[index], tokens)
            # sequences_scores = sum of log-probs / generated_length ** length_penalty (1.0)
            assert out.sequences_scores[index].item() == pytest.approx(score / 6, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(
    "mode", [{"do_sample": False}, {"do_sample": True}, {"num_beams": 3}], ids=["greedy", "sample", "beam"]
)
@torch.no_grad()
def test_generate_runs_the_encoder_once(seq2seq, mode):
    source, mask, _ = seq2seq_batch()
    calls = []
    handle = seq2seq.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        seq2seq.generate(source, attention_mask=mask, max_new_tokens=5, **mode)
    finally:
        handle.remove()
    assert len(calls) == 1


# ---- 10. seq2seq: data collator and Seq2SeqTrainer -------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the tiny vocabulary ("t3" is token 3); the collator pads with it."""
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"t{token}": token for token in range(3, VOCAB)}}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<pad>")),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>",
    )


def copy_dataset(size: int) -> list[dict[str, list[int]]]:
    """Sources of 3 to 5 tokens out of 8; the target is the source and eos."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for index in range(size):
        source = torch.randint(3, 11, (3 + index % 3,), generator=generator).tolist()
        examples.append({"input_ids": source, "labels": source + [EOS]})
    return examples


def test_data_collator_builds_decoder_input_ids_from_labels(tokenizer):
    model = make_seq2seq()
    features = copy_dataset(3)
    batch = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)(features)
    expected_labels = torch.tensor([row["labels"] + [-100] * (6 - len(row["labels"])) for row in features])
    assert torch.equal(batch["labels"], expected_labels)
    assert torch.equal(batch["decoder_input_ids"], shift_tokens_right(expected_labels, PAD, BOS))
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor([3, 4, 5]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_seq2seq_trainer_learns_to_copy(family, tokenizer, tmp_path):
    model = make_seq2seq(family, eos_token_id=EOS)
    dataset = copy_dataset(64)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, per_device_eval_batch_size=32, max_steps=60,
        learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True, seed=0,
        predict_with_generate=True, generation_max_length=8,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    trainer = Seq2SeqTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, data_collator=collator
    )
    loss_before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < 0.2 * loss_before

    predictions = trainer.predict(dataset).predictions
    # generate stops at 8 tokens; the trainer pads them to model.generation_config.max_length
    assert predictions.shape[0] == len(dataset) and predictions.shape[1] >= 8
    assert (predictions[:, 0] == BOS).all() and (predictions[:, 8:] == PAD).all()
    copied = [
        list(row[1 : 1 + len(example["labels"])]) == example["labels"] for row, example in zip(predictions, dataset)
    ]
    assert sum(copied) >= len(dataset) // 2


# ---- 11. save / load -------------------------------------------------------------------------------

HEADS = {
    "sequence": (XLSTMForSequenceClassification, AutoModelForSequenceClassification,
                 {"num_labels": 3, "bidirectional": True}),
    "sequence-values": (XLSTMForSequenceClassification, AutoModelForSequenceClassification,
                        {"num_labels": 3, "vocab_size": None, "num_input_channels": 3}),
    "token": (XLSTMForTokenClassification, AutoModelForTokenClassification, {"num_labels": 4, "bidirectional": True}),
    "seq2seq-untied": (XLSTMForSeq2SeqLM, AutoModelForSeq2SeqLM,
                       {"encoder_layer_types": ENCODER_LAYER_TYPES, "tie_word_embeddings": False}),
    "seq2seq-tied": (XLSTMForSeq2SeqLM, AutoModelForSeq2SeqLM,
                     {"encoder_layer_types": ENCODER_LAYER_TYPES, "tie_word_embeddings": True}),
}


def example_inputs(model) -> dict[str, torch.Tensor]:
    """A padded batch in the form the model reads."""
    ids, mask = pad_batch(prompts_of(5, 12))
    if model.config.vocab_size is None:
        return {"past_values": random_values(2, 12, 3), "attention_mask": mask}
    if model.config.is_encoder_decoder:
        return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": random_ids(2, 4, seed=3)}
    return {"input_ids": ids, "attention_mask": mask}


def assert_same_state_dict(loaded: torch.nn.Module, original: torch.nn.Module):
    loaded_state, original_state = loaded.state_dict(), original.state_dict()
    assert loaded_state.keys() == original_state.keys()
    for key, tensor in original_state.items():
        assert torch.equal(loaded_state[key], tensor), key


@pytest.mark.parametrize("head", list(HEADS))
@torch.no_grad()
def test_save_and_load_round_trip(head, tmp_path):
    model_class, auto_class, overrides = HEADS[head]
    model = make_model(model_class, **overrides)
    model.save_pretrained(tmp_path)
    inputs = example_inputs(model)
    logits = model(**inputs).logits

    for loader in (model_class, auto_class):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is model_class
        assert_same_state_dict(loaded, model)
        assert torch.equal(loaded(**inputs).logits, logits)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_seq2seq_lm_head_is_tied_to_the_embedding_after_loading(tied, tmp_path):
    make_seq2seq(tie_word_embeddings=tied).save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors").keys()
    assert len({"lm_head.weight", "encoder.embeddings.weight"} & stored) == (1 if tied else 2)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert (loaded.lm_head.weight is loaded.encoder.embeddings.weight) == tied


# ---- 12. gradient checkpointing --------------------------------------------------------------------


def training_inputs(model) -> dict[str, torch.Tensor]:
    inputs = example_inputs(model)
    if model.config.is_encoder_decoder:
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                "labels": random_ids(2, 6, seed=4)}
    return {**inputs, "labels": torch.tensor([0, 2])}


def all_blocks(model) -> list[torch.nn.Module]:
    if model.config.is_encoder_decoder:
        return [*model.encoder.blocks, *model.decoder.blocks]
    return list(model.backbone.blocks)


@pytest.mark.parametrize("head", ["seq2seq-untied", "sequence"])
@pytest.mark.filterwarnings("ignore::FutureWarning")  # gradient_checkpointing_enable: the name users know
def test_gradient_checkpointing_gives_same_loss_and_gradients(head):
    model_class, _, overrides = HEADS[head]
    model = make_model(model_class, **overrides).train()
    inputs = training_inputs(model)
    loss, grads = loss_and_gradients(model, **inputs)

    model.gradient_checkpointing_enable()
    block_calls = []
    for block in all_blocks(model):
        block.norm.register_forward_pre_hook(lambda *_: block_calls.append(1))
    checkpointed_loss, checkpointed_grads = loss_and_gradients(model, **inputs)

    assert len(block_calls) == 2 * len(all_blocks(model))  # every block ran again in backward
    assert_close(checkpointed_loss, loss, **TOL)
    for name, grad in grads.items():
        assert_close(checkpointed_grads[name], grad, **TOL, msg=name)


# ---- 13. a bidirectional model has no cache ---------------------------------------------------------


@pytest.mark.parametrize("cache_kwargs", [{"use_cache": True}, {"cache": XLSTMCache(2)}], ids=["use_cache", "cache"])
def test_bidirectional_model_refuses_a_cache(cache_kwargs):
    model = XLSTMModel(tiny_config(bidirectional=True)).eval()
    with pytest.raises(ValueError, match="bidirectional"):
        model(random_ids(2, 6), **cache_kwargs)


@torch.no_grad()
def test_bidirectional_model_returns_no_cache_by_default():
    model = XLSTMModel(tiny_config(bidirectional=True)).eval()
    assert model.config.use_cache and model(random_ids(2, 6)).cache is None
