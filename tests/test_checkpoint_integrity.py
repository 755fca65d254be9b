"""Damaged checkpoints give an error naming the file, mismatched ones are reported as transformers reports them
(and refused with strict=True), a save switches a folder from one checkpoint to the next in one step, whenever it
stops, and a reader gets one save's files while another process saves. See src/xlstm_hf/checkpoint_integrity.py
and src/xlstm_hf/checkpointing.py."""

import json
import os
import shutil
import subprocess
import sys
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

import xlstm_hf.checkpointing as checkpointing
from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMModel,
)
from xlstm_hf.checkpoint_integrity import LEGACY_MANIFEST, MANIFEST, STAGING_PREFIX, CheckpointError, sha256_of

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
    """Rewrite a weights file through `edit(state_dict)` as other code would: without the manifest."""
    weights = load_file(folder / file)
    edit(weights)
    save_file(weights, folder / file, metadata={"format": "pt"})
    (folder / MANIFEST).unlink()


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
        (folder / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="truncated or damaged" if not with_checksum else "sha256") as error:
        LOADERS[loader](folder)
    assert str(weights) in str(error.value)


@pytest.mark.parametrize("loader", ["XLSTMForCausalLM", "AutoModelForCausalLM", "AutoModelForSequenceClassification"])
@pytest.mark.parametrize("with_checksum", [True, False], ids=["checksum", "no_checksum"])
def test_damaged_header_names_the_file(folder, loader, with_checksum):
    overwrite(folder / WEIGHTS, 12, b"\xff" * 24)  # inside the JSON header
    if not with_checksum:
        (folder / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=str(folder / WEIGHTS)):
        LOADERS[loader](folder)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_damaged_tensor_data_is_caught_by_the_checksum(folder, loader):
    """safetensors has no checksum: bytes changed in the tensor data are found by weights.sha256 alone."""
    weights = folder / WEIGHTS
    overwrite(weights, header_length(weights) + 64, b"\x7f" * 16)
    with pytest.raises(CheckpointError, match=f"{weights} does not match its sha256 in {MANIFEST}"):
        LOADERS[loader](folder)


def test_manifest_is_in_sha256sum_format_and_lists_every_file_of_the_save(folder):
    listing = (folder / MANIFEST).read_text()
    for name in (WEIGHTS, "config.json", "generation_config.json", "modeling_xlstm_hf.py"):
        assert f"  {name}\n" in listing
    assert "  README.md\n" not in listing  # the card is documentation, which its owner may edit
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST], cwd=folder, check=True)


def test_deleting_the_checksum_file_loads_a_deliberately_changed_file(tmp_path, folder):
    model = save_model(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / WEIGHTS, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="delete"):
        XLSTMForCausalLM.from_pretrained(folder)
    (folder / MANIFEST).unlink()
    assert_same_weights(XLSTMForCausalLM.from_pretrained(folder), model)


def test_truncated_shard_names_the_shard(tmp_path):
    folder = tmp_path / "sharded"
    torch.manual_seed(0)
    XLSTMForCausalLM(XLSTMConfig(**SIZES)).save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").exists()
    shards[-1].write_bytes(shards[-1].read_bytes()[:100])
    (folder / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=f"{shards[-1]} is not a readable safetensors file"):
        AutoModelForCausalLM.from_pretrained(folder)


# ---- weights that do not fit the model --------------------------------------------------------------------------


@pytest.mark.parametrize("loader", list(LOADERS))
def test_missing_weight_with_strict_names_the_key_and_the_file(folder, loader):
    rewrite_weights(folder, lambda weights: weights.pop(KEY))
    with pytest.raises(CheckpointError, match="lacks 1 weight") as error:
        LOADERS[loader](folder, strict=True)
    assert KEY.removeprefix("backbone.") in str(error.value) and str(folder / WEIGHTS) in str(error.value)


def test_missing_weight_is_reported_and_initialised_as_in_transformers(folder):
    rewrite_weights(folder, lambda weights: weights.pop(KEY))
    model, info = XLSTMForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == {KEY} and model.get_parameter(KEY).isfinite().all()


def test_missing_head_weight_of_a_checkpoint_of_the_same_class_is_an_error_with_strict(tmp_path):
    folder = tmp_path / "classifier"
    save_model(folder, XLSTMForSequenceClassification, num_labels=3)
    rewrite_weights(folder, lambda weights: weights.pop("score.weight"))
    with pytest.raises(CheckpointError, match="score.weight"):
        AutoModelForSequenceClassification.from_pretrained(folder, strict=True)


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
        AutoModel.from_pretrained(folder, strict=True)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_weight_of_another_shape_names_the_key_shapes_and_file(folder, loader):
    key = "backbone.blocks.0.norm.weight"
    rewrite_weights(folder, lambda weights: weights.update({key: torch.ones(7)}))
    with pytest.raises(RuntimeError, match="another shape") as error:  # what transformers raises, and ours
        LOADERS[loader](folder)
    assert isinstance(error.value, CheckpointError)
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


def test_weights_the_model_lacks_are_reported_or_with_strict_an_error(folder):
    config = json.loads((folder / "config.json").read_text())
    config.update(num_hidden_layers=1, layer_types=["mlstm"])  # config.json no longer describes the weights
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not have: backbone.blocks.1."):
        AutoModelForCausalLM.from_pretrained(folder, strict=True)
    model, info = XLSTMForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert len(model.backbone.blocks) == 1
    assert all(key.startswith("backbone.blocks.1.") for key in info["unexpected_keys"])


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
    assert (tmp_path / "model" / MANIFEST).exists()
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

    monkeypatch.setattr(checkpointing, "model_card", failing_card)
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


# ---- one step from one checkpoint to the next ----------------------------------------------------------------------


class Killed(BaseException):
    """A save stopped at one point, as by a kill: nothing after it runs (a real kill would also leave an uncommitted
    staging folder behind; test_staging_folders_of_killed_saves_are_cleaned_up covers that)."""


def saved_pair(tmp_path) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    """A folder holding `old`, and `new`: other weights and another config, to be saved over it."""
    folder = tmp_path / "model"
    old = save_model(folder)
    torch.manual_seed(1)
    new = XLSTMForCausalLM(XLSTMConfig(**SIZES, embedding_dropout=0.25))
    return folder, old, new


def load_as_old_or_new(folder: Path, old, new) -> str:
    """Which of the two the folder loads as, failing on a mixture (config of one, weights of the other)."""
    loaded = XLSTMForCausalLM.from_pretrained(folder)
    matches = [name for name, model in (("old", old), ("new", new)) if all(
        torch.equal(value, model.state_dict()[key]) for key, value in loaded.state_dict().items())]
    assert len(matches) == 1, "the weights are neither the old nor the new ones"
    assert loaded.config.embedding_dropout == {"old": old, "new": new}[matches[0]].config.embedding_dropout, "mixture"
    return matches[0]


def test_a_save_killed_at_any_file_move_leaves_the_old_or_the_new_checkpoint(tmp_path, monkeypatch):
    folder, old, new = saved_pair(tmp_path)
    moves = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *paths: moves.append(paths) or real_replace(*paths))
    new.save_pretrained(tmp_path / "count")
    outcomes = []
    for stop_at in range(len(moves) + 1):
        folder, old, new = saved_pair(tmp_path / str(stop_at))
        calls = iter(range(len(moves) + 1))

        def replace_until_killed(*paths):
            if next(calls) == stop_at:
                raise Killed
            real_replace(*paths)

        monkeypatch.setattr(os, "replace", replace_until_killed)
        try:
            new.save_pretrained(folder)
        except Killed:
            pass
        monkeypatch.setattr(os, "replace", real_replace)
        outcomes.append(load_as_old_or_new(folder, old, new))
        XLSTMForCausalLM(old.config).save_pretrained(folder)  # the next save completes or discards the killed one
        assert not any(path.name.startswith(STAGING_PREFIX) for path in folder.iterdir())
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, key=["old", "new"].index)  # one switch, at the commit point


def test_a_reader_racing_a_writer_in_another_process_gets_the_old_or_the_new_model(tmp_path):
    folder, old, new = saved_pair(tmp_path)
    new.save_pretrained(tmp_path / "new")
    writer = subprocess.Popen([sys.executable, "-c", f"""
import time, sys
from xlstm_hf import XLSTMForCausalLM
models = [XLSTMForCausalLM.from_pretrained(path) for path in ({str(folder)!r}, {str(tmp_path / "new")!r})]
print("ready", flush=True)
end = time.time() + 6
while time.time() < end:
    for model in models:
        model.save_pretrained({str(folder)!r})
"""], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    outcomes = []
    while writer.poll() is None:
        outcomes.append(load_as_old_or_new(folder, old, new))
    assert writer.wait() == 0
    assert {"old", "new"} <= set(outcomes), outcomes  # the loads did overlap the saves


def test_staging_folders_of_killed_saves_are_cleaned_up_and_never_uploaded(folder, monkeypatch):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    uncommitted = folder / f"{STAGING_PREFIX}{dead.stdout.strip()}-abc"
    uncommitted.mkdir()
    (uncommitted / WEIGHTS).write_bytes(b"\0" * 1000)
    live = folder / f"{STAGING_PREFIX}{os.getpid()}-def"  # a save of a running process, still writing
    live.mkdir()
    assert_same_weights(XLSTMForCausalLM.from_pretrained(folder), save_model(folder.parent / "same"))  # ignored
    uploads = []

    class Api:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})

        def upload_folder(self, **kwargs):
            uploads.append(kwargs)

    monkeypatch.setattr(checkpointing, "HfApi", Api)
    XLSTMForCausalLM.from_pretrained(folder).save_pretrained(folder, push_to_hub=True, repo_id="org/model")
    assert not uncommitted.exists() and live.exists()
    assert uploads[0]["folder_path"] == folder and f"{STAGING_PREFIX}*" in uploads[0]["ignore_patterns"]


def test_a_variant_saved_beside_a_checkpoint_keeps_its_checksum(folder):
    torch.manual_seed(2)
    XLSTMForCausalLM(XLSTMConfig(**SIZES)).save_pretrained(folder, variant="v1")
    assert {"model.safetensors", "model.v1.safetensors"} <= set((folder / MANIFEST).read_text().split())
    weights = folder / WEIGHTS
    overwrite(weights, header_length(weights) + 64, b"\x7f" * 16)
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        XLSTMForCausalLM.from_pretrained(folder)
    XLSTMForCausalLM.from_pretrained(folder, variant="v1")


def test_a_checkpoint_saved_with_weights_sha256_is_still_checked(folder):
    """Saves before the manifest wrote weights.sha256 (the weights files only); they load, and damage shows."""
    (folder / LEGACY_MANIFEST).write_text(f"{sha256_of(folder / WEIGHTS)}  {WEIGHTS}\n")
    (folder / MANIFEST).unlink()
    XLSTMForCausalLM.from_pretrained(folder)
    overwrite(folder / WEIGHTS, header_length(folder / WEIGHTS) + 64, b"\x7f" * 16)
    with pytest.raises(CheckpointError, match=f"sha256 in {LEGACY_MANIFEST}"):
        XLSTMForCausalLM.from_pretrained(folder)
    XLSTMForCausalLM(XLSTMConfig(**SIZES)).save_pretrained(folder)  # a new save replaces the old listing
    assert not (folder / LEGACY_MANIFEST).exists()


def test_a_weights_file_replaced_by_other_code_loads_with_a_warning(folder, caplog):
    """What transformers' own tests do: another safetensors file written over the checkpoint's."""
    save_file({"tensor": torch.tensor([1, 2])}, folder / WEIGHTS, metadata={"format": "pt"})
    model, info = XLSTMForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert info["unexpected_keys"] == {"tensor"} and KEY in info["missing_keys"]


def test_a_loaded_model_holds_its_weights_in_aligned_memory_and_computes_what_the_saved_one_did(folder):
    """Weights read from the file's memory map sit 8-byte aligned, and the matrix-product kernels of some CPUs
    (AVX-512) sum differently there: a loaded model gave logits 2e-7 away at one step before the copy."""
    saved = XLSTMForCausalLM.from_pretrained(folder)
    torch.manual_seed(0)
    expected = XLSTMForCausalLM(saved.config).eval()
    expected.load_state_dict(saved.state_dict())
    assert all(tensor.data_ptr() % 64 == 0 for tensor in [*saved.parameters(), *saved.buffers()])
    ids = torch.randint(0, SIZES["vocab_size"], (3, 1))
    assert torch.equal(saved.eval()(ids).logits, expected(ids).logits)
    assert saved.config._name_or_path == str(folder)  # read through a private folder of links, named as the user's
