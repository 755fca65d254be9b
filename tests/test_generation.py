"""What transformers' generation tests ask of a model (its tests/generation/ is not in its source distribution):
continuing from a returned cache and from inputs_embeds, beam search with a cache, other batch sizes, and a
clear error where a cache cannot continue. Beam search itself is held to a reference in tests/test_modeling.py."""

import pytest
import torch
from tiny_models import VOCAB, noisy, random_ids, tiny_config

from xlstm_hf import XLSTMCache, XLSTMConfig, XLSTMForCausalLM, XLSTMForSeq2SeqLM

pytestmark = pytest.mark.usefixtures("single_thread")
GREEDY = {"do_sample": False, "eos_token_id": None}


@pytest.fixture(scope="module", params=["neurips-mixed", "large-mixed"])
def model(request) -> XLSTMForCausalLM:
    torch.manual_seed(0)
    return noisy(XLSTMForCausalLM(tiny_config(request.param)))


def test_generation_continues_from_the_returned_cache(model):
    prompt = random_ids(2, 5)
    whole = model.generate(prompt, max_new_tokens=6, **GREEDY)
    first = model.generate(prompt, max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    assert isinstance(first.cache, XLSTMCache) and first.cache.get_seq_length() == 5 + 3 - 1
    continued = model.generate(first.sequences, cache=first.cache, max_new_tokens=3, **GREEDY)
    assert torch.equal(continued, whole)


def test_generation_continues_from_a_cache_with_a_padded_batch(model):
    prompt, mask = random_ids(2, 6), torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    whole = model.generate(prompt, attention_mask=mask, max_new_tokens=5, **GREEDY)
    first = model.generate(prompt, attention_mask=mask, max_new_tokens=2, return_dict_in_generate=True, **GREEDY)
    grown = torch.cat([mask, torch.ones(2, 2, dtype=mask.dtype)], dim=1)
    continued = model.generate(first.sequences, attention_mask=grown, cache=first.cache, max_new_tokens=3, **GREEDY)
    assert torch.equal(continued, whole)


def test_generation_from_inputs_embeds_and_continued_from_them(model):
    prompt = random_ids(2, 5)
    whole = model.generate(prompt, max_new_tokens=6, **GREEDY)[:, 5:]
    embed = model.get_input_embeddings()
    assert torch.equal(model.generate(inputs_embeds=embed(prompt), max_new_tokens=6, **GREEDY), whole)
    first = model.generate(inputs_embeds=embed(prompt), max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    seen = torch.cat([prompt, first.sequences], dim=1)
    continued = model.generate(inputs_embeds=embed(seen), cache=first.cache, max_new_tokens=3, **GREEDY)
    assert torch.equal(continued, whole[:, 3:])


def test_beam_search_continues_from_a_greedy_cache_repeated_per_beam(model):
    first = model.generate(random_ids(2, 5), max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    first.cache.batch_repeat_interleave(3)
    continued = model.generate(first.sequences, cache=first.cache, num_beams=3, max_new_tokens=4, **GREEDY)
    assert torch.equal(continued, model.generate(first.sequences, num_beams=3, max_new_tokens=4, **GREEDY))


def test_a_cache_left_by_beam_search_cannot_continue(model):
    first = model.generate(random_ids(2, 5), num_beams=3, max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    with pytest.raises(ValueError, match="left by a beam search"):
        model.generate(first.sequences, cache=first.cache, max_new_tokens=2, **GREEDY)


def test_a_second_call_with_another_batch_size(model):
    first = model.generate(random_ids(2, 5), max_new_tokens=2, return_dict_in_generate=True, **GREEDY)
    three = random_ids(3, 8, seed=1)
    assert model.generate(three, max_new_tokens=2, **GREEDY).shape == (3, 10)
    with pytest.raises(ValueError, match="cache holds 2 rows but input_ids has 3"):
        model.generate(three, cache=first.cache, max_new_tokens=2, **GREEDY)


def test_a_prompt_shorter_than_what_the_cache_read_is_refused(model):
    first = model.generate(random_ids(2, 5), max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    with pytest.raises(ValueError, match="cache has read 7 tokens but input_ids holds 4"):
        model.generate(random_ids(2, 4), cache=first.cache, max_new_tokens=2, **GREEDY)


@pytest.mark.parametrize("old_name", ["past_key_values", "cache_params"])
def test_generate_takes_the_older_names_of_the_cache_with_a_warning(model, old_name):
    first = model.generate(random_ids(2, 5), max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    whole = model.generate(random_ids(2, 5), max_new_tokens=6, **GREEDY)
    with pytest.warns(FutureWarning, match=f"`{old_name}` is deprecated"):
        continued = model.generate(first.sequences, max_new_tokens=3, **{old_name: first.cache}, **GREEDY)
    assert torch.equal(continued, whole)


def test_seq2seq_decoding_continues_from_its_cache():
    torch.manual_seed(0)
    config = XLSTMConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_heads=2, chunk_size=8,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    model = noisy(XLSTMForSeq2SeqLM(config))
    source = random_ids(2, 6)
    whole = model.generate(source, max_new_tokens=6, **GREEDY)
    first = model.generate(source, max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    continued = model.generate(source, decoder_input_ids=first.sequences, cache=first.cache, max_new_tokens=3,
                               **GREEDY)
    assert torch.equal(continued, whole)


def test_generate_checks_the_prompt_once_not_at_every_step(model, monkeypatch):
    """Value checks read tensors on the host: generate runs them on its inputs, its steps skip them (the token-id
    range check is the one aminmax of a model call)."""
    checked, aminmax = [], torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *args, **kwargs: checked.append(1) or aminmax(*args, **kwargs))
    model.generate(random_ids(2, 5), attention_mask=torch.ones(2, 5, dtype=torch.long), max_new_tokens=6, **GREEDY)
    assert len(checked) == 1
    with pytest.raises(ValueError, match="input_ids holds the token id 64"):
        model.generate(torch.full((1, 3), VOCAB), max_new_tokens=2, **GREEDY)
