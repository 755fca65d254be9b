"""Behaviour of XLSTMModel / XLSTMForCausalLM as transformers users expect it.

Tiny random models of both block families (mLSTM-only and with sLSTM blocks) with a chunk size of 8,
so that most inputs span several chunks. Weights are perturbed away from their initial values so that
the gates are not trivially at their init. References are plain full forwards without a cache.
"""

import pytest
import torch
import torch.nn.functional as F
import transformers
from padding import pad_batch
from references import beam_search_reference
from safetensors.torch import load_file
from tiny_models import PATTERNS, VOCAB, noisy, random_ids, tiny_config
from torch.testing import assert_close
from torch.utils._pytree import tree_leaves
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.modeling_layers import GradientCheckpointingLayer

from xlstm_hf import XLSTMCache, XLSTMConfig, XLSTMForCausalLM, XLSTMModel
from xlstm_hf.modeling_xlstm import XLSTMRMSNorm

CHUNK = 8
TOL = {"rtol": 1e-5, "atol": 1e-5}
CONFIGS = PATTERNS


def make_model(name: str, **overrides) -> XLSTMForCausalLM:
    """A random model in eval mode, every parameter moved by N(0, 0.05) noise."""
    torch.manual_seed(0)
    return noisy(XLSTMForCausalLM(tiny_config(name, **overrides)))


def prompts_of(*lengths: int) -> list[torch.Tensor]:
    return [random_ids(length, seed=seed) for seed, length in enumerate(lengths)]


def cache_tensors(cache: XLSTMCache) -> list[torch.Tensor]:
    """The state tensors of a cache (blocks without a conv history hold None there)."""
    return [state for state in tree_leaves(cache.layer_states) if state is not None]


def loss_and_gradients(model: XLSTMForCausalLM, ids: torch.Tensor, **kwargs):
    model.zero_grad()
    loss = model(ids, labels=ids, **kwargs).loss
    loss.backward()
    return loss.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}


@pytest.fixture(scope="module", params=list(CONFIGS))
def config_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(config_name) -> XLSTMForCausalLM:
    """Shared eval-mode model; tests that change a model build their own."""
    return make_model(config_name)


# ---- 1. padding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_padded_batch_matches_each_sequence_alone(model, side):
    prompts = prompts_of(3, 11, 20)  # shorter than, longer than and over two chunks
    ids, mask = pad_batch(prompts, side)
    logits = model(ids, attention_mask=mask).logits
    for row, prompt in enumerate(prompts):
        alone = model(prompt[None]).logits[0]
        assert_close(logits[row][mask[row].bool()], alone, **TOL)


@torch.no_grad()
def test_attention_mask_is_not_ignored(model):
    """Guards the padding test itself: without the mask the padded row does change."""
    prompts = prompts_of(5, 12)
    ids, mask = pad_batch(prompts)
    without_mask = model(ids).logits[0, -5:]
    assert not torch.allclose(without_mask, model(prompts[0][None]).logits[0], atol=1e-3)


# ---- 2. cached decoding ----------------------------------------------------------------------------


@torch.no_grad()
def test_decoding_in_pieces_matches_full_forward(model):
    ids = random_ids(2, 20)
    pieces = ids.split([11, 1, 1, 7], dim=1)  # prefill longer than a chunk, single steps, a longer piece
    cache, logits = None, []
    for piece in pieces:
        out = model(piece, cache=cache, use_cache=True)
        cache = out.cache
        logits.append(out.logits)
    assert_close(torch.cat(logits, dim=1), model(ids, use_cache=False).logits, **TOL)


@torch.no_grad()
def test_decoding_left_padded_batch_with_growing_mask_matches_full_forward(model):
    prompt_ids, prompt_mask = pad_batch(prompts_of(5, 13))
    continuation = random_ids(2, 6, seed=7)
    ids = torch.cat([prompt_ids, continuation], dim=1)
    mask = torch.cat([prompt_mask, torch.ones_like(continuation)], dim=1)

    out = model(prompt_ids, attention_mask=prompt_mask, use_cache=True)
    logits, seen = [out.logits], prompt_ids.shape[1]
    for piece in continuation.split([1, 1, 1, 3], dim=1):
        seen += piece.shape[1]
        out = model(piece, attention_mask=mask[:, :seen], cache=out.cache)
        logits.append(out.logits)

    real = mask.bool()
    assert_close(torch.cat(logits, dim=1)[real], model(ids, attention_mask=mask).logits[real], **TOL)


# ---- 3. generate -----------------------------------------------------------------------------------


def greedy_reference(model: XLSTMForCausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """The tokens greedy decoding appends to `prompt`, from full forwards without a cache."""
    ids = prompt[None]
    for _ in range(steps):
        next_token = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=1)
    return ids[0, len(prompt):]


@torch.no_grad()
def test_greedy_generate_of_left_padded_batch_matches_manual_greedy(model):
    prompts = prompts_of(3, 9, 17)
    ids, mask = pad_batch(prompts)
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    for row, prompt in enumerate(prompts):
        assert torch.equal(generated[row, ids.shape[1]:], greedy_reference(model, prompt, 10))


@torch.no_grad()
def test_sampling_with_fixed_seed_is_reproducible(model):
    ids, mask = pad_batch(prompts_of(4, 10))
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(model.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=8))
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, : ids.shape[1]], ids)
    new_tokens = runs[0][:, ids.shape[1]:]
    assert new_tokens.shape == (2, 8) and bool(((new_tokens >= 0) & (new_tokens < VOCAB)).all())


@torch.no_grad()
def test_sampling_with_num_return_sequences(model):
    ids, mask = pad_batch(prompts_of(4, 10))
    kwargs = {"attention_mask": mask, "do_sample": True, "max_new_tokens": 6, "num_return_sequences": 3}
    torch.manual_seed(0)
    sampled = model.generate(ids, **kwargs)
    assert sampled.shape == (6, ids.shape[1] + 6)
    assert torch.equal(sampled[:, : ids.shape[1]], ids.repeat_interleave(3, dim=0))
    assert bool(((sampled >= 0) & (sampled < VOCAB)).all())
    # With top_k=1 every returned sequence is the greedy one: the expanded cache rows match their prompts.
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(model.generate(ids, top_k=1, **kwargs), greedy.repeat_interleave(3, dim=0))


# ---- 4. beam search --------------------------------------------------------------------------------


@torch.no_grad()
def test_beam_search_matches_manual_beam_search(model):
    assert model.config.eos_token_id is None  # all beams run to the same length
    ids, mask = pad_batch(prompts_of(5, 11))
    out = model.generate(
        ids, attention_mask=mask, num_beams=3, do_sample=False, max_new_tokens=6, num_return_sequences=3,
        output_scores=True, return_dict_in_generate=True,
    )
    for row in range(2):
        def next_logits(tokens, row=row):
            sequence, sequence_mask = torch.cat([ids[row], tokens]), torch.cat([mask[row], torch.ones_like(tokens)])
            return model(sequence[None], attention_mask=sequence_mask[None], use_cache=False).logits[0, -1]

        reference = beam_search_reference(next_logits, ids.new_empty(0), num_beams=3, steps=6)
        for rank, (tokens, score) in enumerate(reference):
            index = 3 * row + rank
            assert torch.equal(out.sequences[index], torch.cat([ids[row], tokens]))
            # sequences_scores = sum of log-probs / generated_length ** length_penalty (1.0)
            assert out.sequences_scores[index].item() == pytest.approx(score / 6, rel=1e-4, abs=1e-4)


# ---- 5. training with a cache ----------------------------------------------------------------------


def assert_finite_gradients(model):
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


def test_training_backward_with_default_use_cache(config_name):
    model = make_model(config_name).train()
    ids = random_ids(2, 12)
    model(ids, labels=ids).loss.backward()
    assert_finite_gradients(model)


def test_training_backward_with_use_cache_true(config_name):
    model = make_model(config_name).train()
    ids = random_ids(2, 12)
    out = model(ids, labels=ids, use_cache=True)
    assert isinstance(out.cache, XLSTMCache)
    out.loss.backward()
    assert_finite_gradients(model)


@pytest.mark.parametrize("first_call_grad", [False, True], ids=["detached", "attached"])
def test_training_backward_through_cache_from_previous_call(config_name, first_call_grad):
    """A cache returned by one training call feeds the next; no state is changed in place."""
    model = make_model(config_name).train()
    first, second = random_ids(2, 12), random_ids(2, 10, seed=1)
    with torch.set_grad_enabled(first_call_grad):
        previous = model(first, labels=first, use_cache=True)
    out = model(second, labels=second, cache=previous.cache, use_cache=True)
    loss = out.loss + previous.loss if first_call_grad else out.loss
    loss.backward()
    assert_finite_gradients(model)


# ---- 6. save / load and Auto classes ---------------------------------------------------------------


def assert_same_state_dict(loaded: torch.nn.Module, original: torch.nn.Module):
    loaded_state, original_state = loaded.state_dict(), original.state_dict()
    assert loaded_state.keys() == original_state.keys()
    for key, tensor in original_state.items():
        assert torch.equal(loaded_state[key], tensor), key


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@torch.no_grad()
def test_save_and_load_round_trip(config_name, tied, tmp_path):
    model = make_model(config_name, tie_word_embeddings=tied)
    model.save_pretrained(tmp_path)
    ids = random_ids(2, 12)
    logits = model(ids).logits

    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    stored = load_file(tmp_path / "model.safetensors").keys()
    stored_embeddings = {"lm_head.weight", "backbone.embeddings.weight"} & stored
    assert len(stored_embeddings) == (1 if tied else 2)
    assert XLSTMConfig.from_pretrained(tmp_path).to_dict() == model.config.to_dict()

    for loader in (XLSTMForCausalLM, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is XLSTMForCausalLM
        assert (loaded.lm_head.weight is loaded.backbone.embeddings.weight) == tied
        assert_same_state_dict(loaded, model)
        assert torch.equal(loaded(ids).logits, logits)

    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is XLSTMModel
    assert_same_state_dict(base, model.backbone)
    assert torch.equal(base(ids).last_hidden_state, model.backbone(ids).last_hidden_state)


def test_auto_classes_know_xlstm_hf():
    config = tiny_config("neurips-mixed")
    assert type(AutoConfig.for_model("xlstm_hf")) is XLSTMConfig
    assert type(AutoModelForCausalLM.from_config(config)) is XLSTMForCausalLM
    assert type(AutoModel.from_config(config)) is XLSTMModel


def test_builtin_xlstm_model_type_still_loads_transformers_xlstm():
    config = transformers.xLSTMConfig(vocab_size=VOCAB, hidden_size=32, num_heads=2, num_blocks=1)
    assert type(AutoConfig.for_model("xlstm")) is transformers.xLSTMConfig
    assert type(AutoModelForCausalLM.from_config(config)) is transformers.xLSTMForCausalLM


# ---- 7. gradient checkpointing ---------------------------------------------------------------------


def test_blocks_are_gradient_checkpointing_layers(model):
    assert all(isinstance(block, GradientCheckpointingLayer) for block in model.backbone.blocks)


@pytest.mark.parametrize(
    "enable",
    [
        "activation_checkpointing_enable",
        pytest.param("gradient_checkpointing_enable", marks=pytest.mark.filterwarnings("ignore::FutureWarning")),
    ],
)
def test_checkpointing_gives_same_loss_and_gradients(config_name, enable):
    model = make_model(config_name).train()
    ids = random_ids(2, 12)
    loss, grads = loss_and_gradients(model, ids)

    getattr(model, enable)()
    mixer_calls = []
    for block in model.backbone.blocks:
        block.mixer.register_forward_pre_hook(lambda *_: mixer_calls.append(1))
    checkpointed_loss, checkpointed_grads = loss_and_gradients(model, ids)

    assert len(mixer_calls) == 2 * len(model.backbone.blocks)  # every block ran again in backward
    assert_close(checkpointed_loss, loss, **TOL)
    assert checkpointed_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert_close(checkpointed_grads[name], grad, **TOL, msg=name)


# ---- 8. outputs ------------------------------------------------------------------------------------


@torch.no_grad()
def test_output_hidden_states(model):
    ids = random_ids(2, 10)
    hidden_states = model(ids, output_hidden_states=True).hidden_states
    assert len(hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (2, 10, model.config.hidden_size) for h in hidden_states)
    assert torch.equal(hidden_states[0], model.get_input_embeddings()(ids))


@torch.no_grad()
def test_return_dict_false_returns_tuple(model):
    ids = random_ids(2, 10)
    out = model(ids, return_dict=False)
    assert isinstance(out, tuple)
    assert torch.equal(out[0], model(ids).logits)


@torch.no_grad()
def test_logits_to_keep_returns_last_position(model):
    ids = random_ids(2, 10)
    last = model(ids, logits_to_keep=1).logits
    assert last.shape == (2, 1, VOCAB)
    assert_close(last, model(ids).logits[:, -1:], **TOL)


@torch.no_grad()
def test_inputs_embeds_match_input_ids(model):
    ids = random_ids(2, 10)
    embeds = model.get_input_embeddings()(ids)
    assert_close(model(inputs_embeds=embeds).logits, model(ids).logits, **TOL)


@torch.no_grad()
def test_labels_give_shifted_causal_lm_loss(model):
    ids = random_ids(2, 10)
    labels = ids.clone()
    labels[0, :3] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert_close(out.loss, expected, **TOL)


@pytest.mark.parametrize(("family", "norm_type", "norm_class"), [
    ("neurips", "rmsnorm", XLSTMRMSNorm),
    ("large", "layernorm", torch.nn.LayerNorm),
])
def test_norm_type_overrides_the_family_norm(family, norm_type, norm_class):
    name = f"{family}-mixed"
    model = make_model(name, norm_type=norm_type)
    norms = [block.norm for block in model.backbone.blocks] + [model.backbone.out_norm]
    assert all(type(norm) is norm_class for norm in norms)
    with torch.no_grad():
        assert torch.isfinite(model(random_ids(2, 10)).logits).all()


# ---- 9. the cache ----------------------------------------------------------------------------------


@torch.no_grad()
def test_cache_size_does_not_grow_with_tokens(model):
    ids = random_ids(1, 200)
    cache = model(ids[:, :10]).cache
    size_after_10, seen_after_10 = cache.nbytes(), cache.get_seq_length()
    cache = model(ids[:, 10:], cache=cache).cache
    assert seen_after_10 == 10 and cache.get_seq_length() == 200
    assert size_after_10 > 0 and cache.nbytes() == size_after_10


@torch.no_grad()
def test_cache_with_wrong_batch_size_raises(model):
    cache = model(random_ids(2, 5)).cache
    with pytest.raises(ValueError, match="batch"):
        model(random_ids(3, 1), cache=cache)


@torch.no_grad()
def test_cache_from_model_with_other_block_count_raises(model, config_name):
    other = XLSTMForCausalLM(tiny_config(config_name, layer_types=CONFIGS[config_name]["layer_types"] + ["mlstm"]))
    cache = other.eval()(random_ids(2, 5)).cache
    with pytest.raises(ValueError, match="blocks"):
        model(random_ids(2, 1), cache=cache)


@torch.no_grad()
def test_reorder_cache_permutes_batch_rows(model):
    ids, next_ids = random_ids(3, 10), random_ids(3, 4, seed=1)
    permutation = torch.tensor([2, 0, 1])
    cache = model(ids).cache
    states = [state.clone() for state in cache_tensors(cache)]
    expected_logits = model(next_ids, cache=cache).logits[permutation]

    cache = model(ids).cache
    cache.reorder_cache(permutation)
    for before, after in zip(states, cache_tensors(cache), strict=True):
        assert torch.equal(after, before[permutation])
    assert_close(model(next_ids[permutation], cache=cache).logits, expected_logits, **TOL)


# ---- 10. input errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", ["both", "neither"])
def test_input_ids_xor_inputs_embeds(model, inputs):
    ids = random_ids(2, 5)
    kwargs = {"input_ids": ids, "inputs_embeds": model.get_input_embeddings()(ids)} if inputs == "both" else {}
    with pytest.raises(ValueError, match="input_ids"):
        model(**kwargs)


@pytest.mark.parametrize("mask_shape", [(2, 4), (3, 5), (2, 1, 5), (5,)])
def test_attention_mask_of_wrong_shape_raises(model, mask_shape):
    with pytest.raises(ValueError, match="attention_mask"):
        model(random_ids(2, 5), attention_mask=torch.ones(mask_shape, dtype=torch.long))


# ---- 11. dtypes ------------------------------------------------------------------------------------


@torch.no_grad()
def test_bfloat16_model_runs_and_is_close_to_float32(model, config_name):
    bf16_model = make_model(config_name).to(torch.bfloat16)
    ids, mask = pad_batch(prompts_of(6, 14))
    logits = bf16_model(ids, attention_mask=mask).logits
    assert logits.dtype == torch.bfloat16
    # bfloat16 keeps 8 mantissa bits; over a few blocks the logits (std about 0.7) move by up to ~0.15.
    real = mask.bool()
    assert_close(logits.float()[real], model(ids, attention_mask=mask).logits[real], rtol=0.05, atol=0.25)
    generated = bf16_model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert generated.shape == (2, ids.shape[1] + 5)
    assert bool(((generated >= 0) & (generated < VOCAB)).all())
