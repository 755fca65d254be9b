"""Fidelity to independent implementations: the official `xlstm` package (NeurIPS blocks and
xLSTM-Large) and transformers' built-in xLSTM. Small random models of several block patterns and odd
sizes are converted, then outputs, gradients and step-by-step decoding are compared in float32."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file
from torch.testing import assert_close
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMBlockStack,
    xLSTMBlockStackConfig,
    xLSTMLMModel,
    xLSTMLMModelConfig,
)
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
from xlstm.xlstm_large.utils import convert_single_weights_to_fused_weights

import xlstm_hf
from xlstm_hf import XLSTMForCausalLM, XLSTMModel, convert_official_xlstm

REPO = Path(__file__).resolve().parents[1]


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Agreement to `rel` relative to the scale of the expected tensor (elements near zero included).

    The mLSTM stabiliser of a zero initial state is m = 0 here and in the official recurrent step, but
    -inf in the official parallel form; the normaliser's eps = 1e-6 then weighs differently, a
    difference of up to about 1e-6 of the output scale that is not rounding.
    """
    assert_close(actual, expected, rtol=rel, atol=rel * max(1.0, expected.abs().max().item()))


def perturb_(model: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Move every weight away from its (often trivial) initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def official_stack_config(
    layout: list[int],
    embedding_dim: int = 64,
    mlstm_heads: int = 4,
    slstm_heads: int = 4,
    slstm_conv: int = 4,
    bias: bool = False,
    feedforward: bool = True,
    post_norm: bool = True,
    config_class=xLSTMBlockStackConfig,
    **kwargs,
):
    """An official NeurIPS block stack; `layout` holds 0 (mLSTM) or 1 (sLSTM) per block. (The official
    mLSTM layer cannot be built without its conv, so only the sLSTM conv can be switched off.)"""
    mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=mlstm_heads))
    slstm = sLSTMBlockConfig(
        slstm=sLSTMLayerConfig(backend="vanilla", num_heads=slstm_heads, conv1d_kernel_size=slstm_conv),
        feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu") if feedforward else None,
    )
    return config_class(
        mlstm_block=mlstm if 0 in layout else None,
        slstm_block=slstm if 1 in layout else None,
        slstm_at=[idx for idx, kind in enumerate(layout) if kind == 1],
        num_blocks=len(layout),
        embedding_dim=embedding_dim,
        context_length=128,
        bias=bias,
        add_post_blocks_norm=post_norm,
        **kwargs,
    )


NEURIPS_STACKS = {
    "mlstm": dict(layout=[0, 0]),
    "slstm": dict(layout=[1]),
    "mixed": dict(layout=[0, 1, 0, 0]),
    "slstm-first-odd-width": dict(layout=[1, 0, 1], embedding_dim=48, mlstm_heads=2, slstm_heads=3),
    "no-slstm-conv-bias-no-ffn-no-out-norm": dict(
        layout=[0, 1], slstm_conv=0, bias=True, feedforward=False, post_norm=False
    ),
}


@pytest.mark.parametrize("name", NEURIPS_STACKS)
def test_block_stack_matches_official(name):
    torch.manual_seed(0)
    official = perturb_(xLSTMBlockStack(official_stack_config(**NEURIPS_STACKS[name])))
    ours = convert_official_xlstm(official)
    assert isinstance(ours, XLSTMModel) and ours.get_input_embeddings() is None
    x = torch.randn(2, 37, official.config.embedding_dim)
    with torch.no_grad():
        assert_matches(ours(inputs_embeds=x).last_hidden_state, official(x))


def official_lm(layout, vocab_size=97, tie_weights=False, seed=0, **kwargs) -> xLSTMLMModel:
    torch.manual_seed(seed)
    config = official_stack_config(layout, config_class=xLSTMLMModelConfig, vocab_size=vocab_size,
                                   tie_weights=tie_weights, **kwargs)
    return perturb_(xLSTMLMModel(config), seed=seed)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_language_model_matches_official(tie_weights):
    official = official_lm([0, 1, 0], tie_weights=tie_weights)
    ours = convert_official_xlstm(official)
    assert isinstance(ours, XLSTMForCausalLM)
    ids = torch.randint(0, 97, (3, 70))  # longer than our chunk size of 64
    with torch.no_grad():
        assert_matches(ours(ids).logits, official(ids))


def test_gradients_match_official():
    official = official_lm([1, 0], seed=1)
    ours = convert_official_xlstm(official)
    ids = torch.randint(0, 97, (2, 29))
    torch.nn.functional.cross_entropy(official(ids).flatten(0, 1), ids.flatten()).backward()
    torch.nn.functional.cross_entropy(ours(ids).logits.flatten(0, 1), ids.flatten()).backward()
    official_grads = {
        "lm_head": official.lm_head.weight.grad,
        "embedding": official.token_embedding.weight.grad,
        "slstm input gate": official.xlstm_block_stack.blocks[0].xlstm.fgate.weight.grad,
        "mlstm up-projection": official.xlstm_block_stack.blocks[1].xlstm.proj_up.weight.grad,
    }
    our_grads = {
        "lm_head": ours.lm_head.weight.grad,
        "embedding": ours.backbone.embeddings.weight.grad,
        "slstm input gate": ours.backbone.blocks[0].mixer.igate.weight.grad,
        "mlstm up-projection": ours.backbone.blocks[1].mixer.proj_up.weight.grad,
    }
    for name, grad in official_grads.items():
        assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_step_by_step_decoding_matches_official_step():
    official = official_lm([0, 1, 1, 0], seed=2)
    ours = convert_official_xlstm(official)
    ids = torch.randint(0, 97, (2, 12))
    state, cache = None, None
    with torch.no_grad():
        for t in range(ids.shape[1]):
            official_logits, state = official.step(ids[:, t : t + 1], state)
            output = ours(ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = output.cache
            assert_matches(output.logits, official_logits)


def official_large(weight_mode="single", seed=0, **kwargs) -> xLSTMLarge:
    torch.manual_seed(seed)
    settings = dict(embedding_dim=128, num_heads=4, num_blocks=2, vocab_size=101, chunk_size=16)
    settings |= kwargs
    config = xLSTMLargeConfig(
        **settings,
        weight_mode=weight_mode,
        chunkwise_kernel="chunkwise--native_autograd",
        sequence_kernel="native_sequence__native",
        step_kernel="native",
        mode="inference",
        return_last_states=True,
        autocast_kernel_dtype="float32",
    )
    return perturb_(xLSTMLarge(config), scale=0.2, seed=seed)


LARGE_MODELS = {
    "single": dict(),
    "fused": dict(weight_mode="fused"),
    "bias-odd-widths-no-caps": dict(use_bias=True, embedding_dim=96, num_heads=3, qk_dim_factor=0.25,
                                    gate_soft_cap=None, output_logit_soft_cap=None, add_out_norm=False),
}


@pytest.mark.parametrize("name", LARGE_MODELS)
def test_large_matches_official(name):
    official = official_large(**LARGE_MODELS[name])
    ours = convert_official_xlstm(official)
    ids = torch.randint(0, 101, (2, 45))
    with torch.no_grad():
        official_logits, _ = official(ids)
        assert_matches(ours(ids).logits, official_logits)


def test_large_step_by_step_matches_official():
    official = official_large(seed=3)
    ours = convert_official_xlstm(official)
    ids = torch.randint(0, 101, (2, 10))
    state, cache = None, None
    with torch.no_grad():
        for t in range(ids.shape[1]):
            official_logits, state = official(ids[:, t : t + 1], state)
            output = ours(ids[:, t : t + 1], cache=cache, use_cache=True)
            cache = output.cache
            assert_matches(output.logits, official_logits)


def test_convert_rejects_other_models():
    with pytest.raises(TypeError, match="xLSTMBlockStack"):
        convert_official_xlstm(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------
# transformers' built-in xLSTM ("model_type": "xlstm")
# ---------------------------------------------------------------------------------------------------


def builtin_checkpoint(folder: Path, fused: bool = False) -> transformers.xLSTMForCausalLM:
    """Save a small random built-in transformers xLSTM to `folder`; `fused` rewrites the checkpoint into
    the fused-weight layout with the official converter (the built-in cannot initialise a fused model)."""
    torch.manual_seed(0)
    config = transformers.xLSTMConfig(
        vocab_size=101, hidden_size=128, num_hidden_layers=2, num_heads=4, chunk_size=16,
        autocast_kernel_dtype="float32", pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    model = perturb_(transformers.xLSTMForCausalLM(config))
    model.save_pretrained(folder)
    if fused:
        # the official converter relies on the module order of the keys
        weights = convert_single_weights_to_fused_weights(dict(model.state_dict()))
        save_file({key: value.contiguous() for key, value in weights.items()}, folder / "model.safetensors",
                  metadata={"format": "pt"})
        config_json = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config_json | {"weight_mode": "fused"}))
    return model


@pytest.mark.parametrize("fused", [False, True])
def test_builtin_checkpoint_loads_and_matches(tmp_path, fused):
    builtin = builtin_checkpoint(tmp_path, fused)
    ours = XLSTMForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(3, 101, (2, 40))
    with torch.no_grad():
        assert_matches(ours(ids).logits, builtin(ids).logits)
    prompt = ids[:, :8]
    greedy = dict(max_new_tokens=12, do_sample=False)
    assert torch.equal(ours.generate(prompt, **greedy), builtin.generate(prompt, **greedy))


def test_builtin_type_is_not_taken_over(tmp_path):
    builtin_checkpoint(tmp_path)
    assert type(transformers.AutoModelForCausalLM.from_pretrained(tmp_path)) is transformers.xLSTMForCausalLM
    assert "xlstm_hf" in transformers.CONFIG_MAPPING and xlstm_hf.XLSTMConfig.model_type == "xlstm_hf"


def test_conversion_script(tmp_path):
    builtin = builtin_checkpoint(tmp_path / "builtin")
    output = tmp_path / "converted"
    command = [sys.executable, str(REPO / "scripts" / "convert_transformers_xlstm.py"), str(tmp_path / "builtin"),
               str(output)]
    subprocess.run(command, check=True, capture_output=True)
    converted = transformers.AutoModelForCausalLM.from_pretrained(output)
    assert isinstance(converted, XLSTMForCausalLM)
    ids = torch.randint(3, 101, (1, 20))
    with torch.no_grad():
        assert_matches(converted(ids).logits, builtin(ids).logits)
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode != 0 and "exists" in rerun.stderr
