"""Damaged and mismatched checkpoints give an error naming the file or the key instead of a model with weights
left at random, and saving over a folder keeps the old checkpoint (and the user's files) when it fails midway.
See src/xlstm_hf/checkpoint_integrity.py."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTimeSeriesPrediction,
    AutoModelForTokenClassification,
)

import xlstm_hf.modeling_xlstm as modeling
from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMModel,
)
from xlstm_hf.checkpoint_integrity import CHECKSUM_FILE, STAGING_PREFIX, CheckpointError

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = {"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_heads": 2, "chunk_size": 4,
         "layer_types": ["mlstm", "slstm"]}
KEY = "backbone.blocks.0.mixer.q_proj.weight"  # a weight of the base model, in every head's checkpoint
WEIGHTS = "model.safetensors"
# the loaders a checkpoint of XLSTMForCausalLM must refuse alike: its class, the Auto classes, other heads
LOADERS = {
    "XLSTMForCausalLM": lambda folder, **kw: XLSTMForCausalLM.from_pretrained(folder, **kw),
    "AutoModelForCausalLM": lambda folder, **kw: AutoModelForCausalLM.from_pretrained(folder, **kw),
    "AutoModel": lambda folder, **kw: AutoModel.from_pretrained(folder, **kw),
    "AutoModelForSequenceClassification": lambda folder, **kw: AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, **kw
    ),
}


def save_model(folder: Path, model_class=XLSTMForCausalLM, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = model_class(XLSTMConfig(**{**SIZES, **overrides}))
    model.save_pretrained(folder)
    return model


@pytest.fixture
def folder(tmp_path) -> Path:
    save_model(tmp_path / "model")
    return tmp_path / "model"


def rewrite_weights(folder: Path, edit, file: str = WEIGHTS) -> None:
    """Rewrite a weights file through `edit(state_dict)` as other code would: without weights.sha256."""
    weights = load_file(folder / file)
    edit(weights)
    save_file(weights, folder / file, metadata={"format": "pt"})
    (folder / CHECKSUM_FILE).unlink()


def overwrite(path: Path, offset: int, data: bytes) -> None:
    content = bytearray(path.read_bytes())
    content[offset : offset + len(data)] = data
    path.write_bytes(bytes(content))


def header_length(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def assert_same_weights(model: torch.nn.Module, expected: torch.nn.Module) -> None:
    expected_weights = expected.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected_weights[name]), name


# ---- damaged weights files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("with_checksum", [True, False], ids=["checksum", "no_checksum"])
def test_truncated_weights_file_names_the_file(folder, loader, with_checksum):
    weights = folder / WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    if not with_checksum:
        (folder / CHECKSUM_FILE).unlink()
    with pytest.raises(CheckpointError, match="truncated or damaged" if not with_checksum else "sha256") as error:
        LOADERS[loader](folder)
    assert str(weights) in str(error.value)


@pytest.mark.parametrize("loader", ["XLSTMForCausalLM", "AutoModelForCausalLM", "AutoModelForSequenceClassification"])
@pytest.mark.parametrize("with_checksum", [True, False], ids=["checksum", "no_checksum"])
def test_damaged_header_names_the_file(folder, loader, with_checksum):
    overwrite(folder / WEIGHTS, 12, b"\xff" * 24)  # inside the JSON header
    if not with_checksum:
        (folder / CHECKSUM_FILE).unlink()
    with pytest.raises(CheckpointError, match=str(folder / WEIGHTS)):
        LOADERS[loader](folder)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_damaged_tensor_data_is_caught_by_the_checksum(folder, loader):
    """safetensors has no checksum: bytes changed in the tensor data are found by weights.sha256 alone."""
    weights = folder / WEIGHTS
    overwrite(weights, header_length(weights) + 64, b"\x7f" * 16)
    with pytest.raises(CheckpointError, match=f"{weights} does not match its sha256 in {CHECKSUM_FILE}"):
        LOADERS[loader](folder)


def test_checksum_file_is_in_sha256sum_format(folder):
    listing = (folder / CHECKSUM_FILE).read_text()
    assert listing.endswith(f"  {WEIGHTS}\n")
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", CHECKSUM_FILE], cwd=folder, check=True)


def test_deleting_the_checksum_file_loads_a_deliberately_changed_file(tmp_path, folder):
    model = save_model(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / WEIGHTS, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="delete"):
        XLSTMForCausalLM.from_pretrained(folder)
    (folder / CHECKSUM_FILE).unlink()
    assert_same_weights(XLSTMForCausalLM.from_pretrained(folder), model)


def test_truncated_shard_names_the_shard(tmp_path):
    folder = tmp_path / "sharded"
    torch.manual_seed(0)
    XLSTMForCausalLM(XLSTMConfig(**SIZES)).save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").exists()
    shards[-1].write_bytes(shards[-1].read_bytes()[:100])
    (folder / CHECKSUM_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{shards[-1]} is not a readable safetensors file"):
        AutoModelForCausalLM.from_pretrained(folder)


# ---- weights that do not fit the model --------------------------------------------------------------------------


@pytest.mark.parametrize("loader", list(LOADERS))
def test_missing_weight_names_the_key_and_the_file(folder, loader):
    rewrite_weights(folder, lambda weights: weights.pop(KEY))
    with pytest.raises(CheckpointError, match="lacks 1 weight") as error:
        LOADERS[loader](folder)
    assert KEY.removeprefix("backbone.") in str(error.value) and str(folder / WEIGHTS) in str(error.value)


def test_missing_weight_loads_with_strict_false(folder):
    rewrite_weights(folder, lambda weights: weights.pop(KEY))
    model = XLSTMForCausalLM.from_pretrained(folder, strict=False)
    _, info = XLSTMForCausalLM.from_pretrained(folder, strict=False, output_loading_info=True)
    assert info["missing_keys"] == {KEY} and model.get_parameter(KEY).isfinite().all()


def test_missing_head_weight_of_a_checkpoint_of_the_same_class_is_an_error(tmp_path):
    folder = tmp_path / "classifier"
    save_model(folder, XLSTMForSequenceClassification, num_labels=3)
    rewrite_weights(folder, lambda weights: weights.pop("score.weight"))
    with pytest.raises(CheckpointError, match="score.weight"):
        AutoModelForSequenceClassification.from_pretrained(folder)


@pytest.mark.parametrize(
    "saved_class, loader, new_keys",
    [
        (XLSTMForCausalLM, lambda f: XLSTMForSequenceClassification.from_pretrained(f, num_labels=3),
         {"score.weight", "score.bias"}),
        (XLSTMForCausalLM, lambda f: AutoModelForTokenClassification.from_pretrained(f, num_labels=3),
         {"classifier.weight", "classifier.bias"}),
        (XLSTMModel, lambda f: AutoModelForCausalLM.from_pretrained(f), {"lm_head.weight"}),
    ],
    ids=["lm_to_sequence_classifier", "lm_to_tagger", "base_to_lm"],
)
def test_head_weights_are_new_when_the_checkpoint_has_another_head(tmp_path, saved_class, loader, new_keys):
    saved = save_model(tmp_path / "model", saved_class)
    model = loader(tmp_path / "model")
    base = saved if isinstance(saved, XLSTMModel) else saved.backbone
    assert_same_weights(model.backbone, base)
    assert {name for name, _ in model.named_parameters() if not name.startswith("backbone.")} == new_keys


def test_base_model_of_a_forecaster_gets_a_new_token_embedding_but_no_other_new_weight(tmp_path):
    """A forecaster has no token embedding: its base model loaded alone gets one, new (as in transformers), while
    any other weight it lacks is still an error."""
    folder = tmp_path / "forecaster"
    saved = save_model(folder, XLSTMForTimeSeriesPrediction, context_length=8, prediction_length=4, patch_length=4,
                       patch_stride=4, num_input_channels=2)
    base = AutoModel.from_pretrained(folder)
    assert_same_weights(base.blocks, saved.backbone.blocks)
    rewrite_weights(folder, lambda weights: weights.pop(KEY))
    with pytest.raises(CheckpointError, match=KEY.removeprefix("backbone.")):
        AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_weight_of_another_shape_names_the_key_shapes_and_file(folder, loader):
    key = "backbone.blocks.0.norm.weight"
    rewrite_weights(folder, lambda weights: weights.update({key: torch.ones(7)}))
    with pytest.raises(CheckpointError, match="another shape") as error:
        LOADERS[loader](folder)
    message = str(error.value)
    assert "blocks.0.norm.weight (7,)" in message and "(16,) in the model" in message
    assert str(folder / WEIGHTS) in message and "ignore_mismatched_sizes=True" in message


def test_ignore_mismatched_sizes_initialises_another_shape_anew_as_in_transformers(tmp_path):
    folder = tmp_path / "classifier"
    saved = save_model(folder, XLSTMForSequenceClassification, num_labels=3)
    with pytest.raises(CheckpointError, match="score.weight"):
        AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True)
    assert model.score.weight.shape == (5, 16)
    assert_same_weights(model.backbone, saved.backbone)


def test_weights_the_model_lacks_are_an_error_for_its_own_class(folder):
    config = json.loads((folder / "config.json").read_text())
    config.update(num_hidden_layers=1, layer_types=["mlstm"])  # config.json no longer describes the weights
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not have: backbone.blocks.1."):
        AutoModelForCausalLM.from_pretrained(folder)
    assert len(XLSTMForCausalLM.from_pretrained(folder, strict=False).backbone.blocks) == 1


# ---- config.json ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [XLSTMForCausalLM, XLSTMModel, XLSTMForSequenceClassification])
def test_config_of_another_model_type_names_the_file(folder, model_class):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match=f"{folder / 'config.json'} describes a model of type 'llama'"):
        model_class.from_pretrained(folder)


@pytest.mark.parametrize(
    "loader", ["XLSTMForCausalLM", "AutoModelForCausalLM", "AutoModel", "AutoModelForSequenceClassification"]
)
def test_invalid_config_json_names_the_file(folder, loader):
    (folder / "config.json").write_text('{"model_type": "xlstm_hf", "hidden_size": ')
    with pytest.raises(OSError, match="config.json") as error:
        LOADERS[loader](folder)
    assert str(folder / "config.json") in str(error.value)


def test_a_config_passed_explicitly_bypasses_a_broken_config_json(folder):
    config = XLSTMConfig.from_pretrained(folder)
    (folder / "config.json").write_text("not json")
    XLSTMForCausalLM.from_pretrained(folder, config=config)


# ---- clean round trips stay clean --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_class, loader, overrides",
    [
        (XLSTMForCausalLM, AutoModelForCausalLM, {"tie_word_embeddings": True}),
        (XLSTMForCausalLM, AutoModelForCausalLM, {"block_family": "large", "layer_types": ["mlstm", "mlstm"]}),
        (XLSTMForSeq2SeqLM, transformers.AutoModelForSeq2SeqLM,
         {"decoder_start_token_id": 1, "encoder_layer_types": ["mlstm"]}),
        (XLSTMForSequenceClassification, AutoModelForSequenceClassification,
         {"vocab_size": None, "num_input_channels": 2, "num_labels": 2}),
        (XLSTMForTimeSeriesPrediction, AutoModelForTimeSeriesPrediction,
         {"context_length": 8, "prediction_length": 4, "patch_length": 4, "patch_stride": 4, "num_input_channels": 2}),
    ],
    ids=["tied_lm", "large_lm", "seq2seq", "values_classifier", "time_series"],
)
def test_every_head_reloads_strictly_with_its_checksum(tmp_path, model_class, loader, overrides):
    saved = save_model(tmp_path / "model", model_class, **overrides)
    assert (tmp_path / "model" / CHECKSUM_FILE).exists()
    assert_same_weights(loader.from_pretrained(tmp_path / "model"), saved)


# ---- saving over an existing folder ------------------------------------------------------------------------------


def user_files(folder: Path) -> dict[str, str]:
    (folder / "tokenizer.json").write_text('{"user": "tokenizer"}')
    (folder / "README.md").write_text("# my own card\n")
    return {"tokenizer.json": '{"user": "tokenizer"}', "README.md": "# my own card\n"}


def half_written_then_disk_full(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"\x00" * 100)
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("with_readme", [True, False], ids=["user_readme", "model_card"])
def test_save_failing_in_the_weights_keeps_the_old_checkpoint_and_user_files(folder, monkeypatch, with_readme):
    old = XLSTMForCausalLM.from_pretrained(folder)
    files = user_files(folder)
    if not with_readme:  # then the save writes its model card
        (folder / "README.md").unlink()
        files.pop("README.md")
    before = sorted(path.name for path in folder.iterdir())
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", half_written_then_disk_full)
    torch.manual_seed(1)
    new = XLSTMForCausalLM(old.config)
    with pytest.raises(OSError, match="No space left"):
        new.save_pretrained(folder)
    assert sorted(path.name for path in folder.iterdir()) == before  # no staging folder left either
    assert all((folder / name).read_text() == text for name, text in files.items())
    monkeypatch.undo()
    assert_same_weights(XLSTMForCausalLM.from_pretrained(folder), old)


def test_save_failing_in_the_model_card_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    old = save_model(folder)
    (folder / "README.md").unlink()  # the card is written only where the folder has none
    (folder / "tokenizer.json").write_text("tok")

    def failing_card(model, training=None):
        raise RuntimeError("card template broken")

    monkeypatch.setattr(modeling, "model_card", failing_card)
    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="card template broken"):
        XLSTMForCausalLM(old.config).save_pretrained(folder)
    assert not (folder / "README.md").exists() and (folder / "tokenizer.json").read_text() == "tok"
    assert not any(path.name.startswith(STAGING_PREFIX) for path in folder.iterdir())
    assert_same_weights(XLSTMForCausalLM.from_pretrained(folder), old)


def test_save_failing_into_a_new_folder_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", half_written_then_disk_full)
    with pytest.raises(OSError):
        save_model(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_saving_over_a_sharded_checkpoint_replaces_it_and_keeps_user_files(tmp_path):
    folder = tmp_path / "model"
    torch.manual_seed(0)
    XLSTMForCausalLM(XLSTMConfig(**SIZES)).save_pretrained(folder, max_shard_size="20KB")
    files = user_files(folder)
    new = save_model(folder, seed=1)
    assert not list(folder.glob("model-*.safetensors")) and not (folder / "model.safetensors.index.json").exists()
    assert all((folder / name).read_text() == text for name, text in files.items())  # the README is the user's
    assert_same_weights(AutoModelForCausalLM.from_pretrained(folder), new)
