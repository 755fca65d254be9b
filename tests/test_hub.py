"""Saved folders on the Hub's terms: their own code (loading with `trust_remote_code=True` where xlstm_hf
cannot be imported, identical outputs), the auto_map, loading by repo id from a Hub cache offline, the
model card, push_to_hub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from huggingface_hub import HfApi, ModelCard
from transformers.dynamic_module_utils import get_imports

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMForTokenClassification,
    XLSTMModel,
)
from xlstm_hf.hub import model_card

VOCAB = 40
WORKER = Path(__file__).parent / "remote_code_worker.py"
TIME_SERIES = {
    "context_length": 16,
    "prediction_length": 4,
    "patch_length": 4,
    "patch_stride": 4,
    "num_input_channels": 2,
}


def token_inputs() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return {"input_ids": ids, "attention_mask": mask}


# head: (model class, its Auto class, config overrides, inputs)
HEADS = {
    "base": (XLSTMModel, "AutoModel", {}, token_inputs),
    "causal_lm": (XLSTMForCausalLM, "AutoModelForCausalLM", {}, token_inputs),
    "sequence_classification": (
        XLSTMForSequenceClassification,
        "AutoModelForSequenceClassification",
        {"num_labels": 3},
        token_inputs,
    ),
    "values_classification": (
        XLSTMForSequenceClassification,
        "AutoModelForSequenceClassification",
        {"num_labels": 2, "vocab_size": None, "num_input_channels": 2},
        lambda: {"past_values": torch.randn(2, 9, 2, generator=torch.Generator().manual_seed(0))},
    ),
    "token_classification": (
        XLSTMForTokenClassification,
        "AutoModelForTokenClassification",
        {"num_labels": 3, "bidirectional": True},
        token_inputs,
    ),
    "seq2seq": (
        XLSTMForSeq2SeqLM,
        "AutoModelForSeq2SeqLM",
        {"decoder_start_token_id": 1},
        lambda: {**token_inputs(), "decoder_input_ids": torch.tensor([[1, 5, 6], [1, 7, 8]])},
    ),
    "time_series": (
        XLSTMForTimeSeriesPrediction,
        "AutoModelForTimeSeriesPrediction",
        TIME_SERIES,
        lambda: {"past_values": torch.randn(2, 16, 2, generator=torch.Generator().manual_seed(0))},
    ),
}


def save_head(head: str, folder: Path, **overrides) -> torch.nn.Module:
    model_class, _, config_overrides, _ = HEADS[head]
    sizes = {"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_heads": 2, "chunk_size": 4}
    config = XLSTMConfig(
        **{**sizes, "layer_types": ["mlstm", "slstm"], "pad_token_id": 0, **config_overrides, **overrides}
    )
    torch.manual_seed(0)
    model = model_class(config)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("head", list(HEADS))
def test_saved_folder_loads_as_remote_code_without_xlstm_hf(head, tmp_path):
    folder = tmp_path / "model"
    save_head(head, folder)
    _, auto_class, _, make_inputs = HEADS[head]
    inputs = make_inputs()
    torch.save(inputs, tmp_path / "inputs.pt")
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    command = [
        sys.executable,
        str(WORKER),
        str(folder),
        auto_class,
        str(tmp_path / "inputs.pt"),
        str(tmp_path / "out.pt"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    reference = getattr(transformers, auto_class).from_pretrained(folder, backend="native").eval()
    assert type(reference).__module__.startswith("xlstm_hf.")  # installed, xlstm_hf's classes load it
    with torch.no_grad():
        expected = reference(**inputs)[0]
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


@pytest.mark.parametrize(
    "head, auto_classes",
    [
        (
            "causal_lm",
            {
                "AutoConfig",
                "AutoModel",
                "AutoModelForCausalLM",
                "AutoModelForSequenceClassification",
                "AutoModelForTokenClassification",
            },
        ),
        ("seq2seq", {"AutoConfig", "AutoModelForSeq2SeqLM"}),
        ("time_series", {"AutoConfig", "AutoModel", "AutoModelForTimeSeriesPrediction"}),
    ],
)
def test_auto_map_lists_every_auto_class_of_the_checkpoint(head, auto_classes, tmp_path):
    save_head(head, tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == auto_classes
    for reference in auto_map.values():
        module, class_name = reference.split(".")
        assert (tmp_path / f"{module}.py").is_file() and f"class {class_name}(" in (
            tmp_path / f"{module}.py"
        ).read_text()


def test_saved_code_imports_only_installed_packages_outside_try(tmp_path):
    """transformers refuses remote code whose imports are not installed; outside try/except ours imports
    only the standard library, torch and transformers with its own dependencies."""
    save_head("causal_lm", tmp_path)
    imported = set().union(*(get_imports(path) for path in tmp_path.glob("*.py"))) - sys.stdlib_module_names
    assert imported <= {"torch", "transformers", "huggingface_hub", "safetensors"}, imported


def test_loading_by_repo_id_from_a_hub_cache_offline(tmp_path):
    """A Hub cache (models--org--name/refs/main, snapshots/<sha>/) holding a saved model loads by its repo
    id with HF_HUB_OFFLINE=1, through xlstm_hf and through the model's own code."""
    snapshot = tmp_path / "cache" / "models--org--tiny-xlstm" / "snapshots" / ("a" * 40)
    model = save_head("causal_lm", snapshot)
    (tmp_path / "cache" / "models--org--tiny-xlstm" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--tiny-xlstm" / "refs" / "main").write_text("a" * 40)
    ids = token_inputs()["input_ids"]
    with torch.no_grad():
        expected = model.eval()(ids).logits
    torch.save(expected, tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "if sys.argv[1] == 'remote': sys.modules['xlstm_hf'] = None\n"
        "else: import xlstm_hf\n"
        "from transformers import AutoModelForCausalLM\n"
        "model = AutoModelForCausalLM.from_pretrained('org/tiny-xlstm', trust_remote_code=True).eval()\n"
        f"ids = torch.tensor({ids.tolist()})\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-6)\n"
    )
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    for mode in ("installed", "remote"):
        result = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, env=environment, timeout=300
        )
        assert result.returncode == 0, f"{mode}: {result.stderr[-3000:]}"


# ---- model cards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, pipeline_tag",
    [
        ("causal_lm", "text-generation"),
        ("sequence_classification", "text-classification"),
        ("token_classification", "token-classification"),
        ("seq2seq", "text2text-generation"),
        ("time_series", "time-series-forecasting"),
    ],
)
def test_saving_writes_a_model_card_with_metadata(head, pipeline_tag, tmp_path):
    model = save_head(head, tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == pipeline_tag
    assert card.data.license == "apache-2.0"
    assert {"xlstm", "xlstm_hf"} <= set(card.data.tags)
    assert type(model).__name__ in card.text and f"{model.num_parameters():,}" in card.text


def test_model_card_records_training_figures(tmp_path):
    model = save_head("causal_lm", tmp_path)
    training = {"datasets": ["kjv"], "metrics": {"perplexity": 48.0}, "description": "400 steps on the KJV."}
    model_card(model, training).save(tmp_path / "card.md")
    card = ModelCard.load(tmp_path / "card.md")
    assert card.data.datasets == ["kjv"] and card.data.metrics == ["perplexity"]
    assert "| perplexity | 48.0 |" in card.text and "400 steps on the KJV." in card.text


def test_saving_keeps_a_card_the_folder_already_has(tmp_path):
    (tmp_path / "README.md").write_text("my own notes")
    save_head("causal_lm", tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own notes"


def test_push_to_hub_uploads_weights_config_code_and_card(monkeypatch, tmp_path):
    uploaded = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded.update(repo_id=repo_id, files=sorted(os.listdir(folder_path)), **kwargs)

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: type("Repo", (), {"repo_id": repo_id}))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = save_head("causal_lm", tmp_path)
    model.push_to_hub("org/tiny-xlstm", commit_message="first")
    assert uploaded["repo_id"] == "org/tiny-xlstm" and uploaded["commit_message"] == "first"
    assert {
        "model.safetensors",
        "config.json",
        "README.md",
        "modeling_xlstm_hf.py",
        "configuration_xlstm_hf.py",
        "xlstm_hf_kernels.py",
    } <= set(uploaded["files"])
