"""How xlstm_hf models save and load: transformers' `save_pretrained`, `from_pretrained` and `push_to_hub`, made
atomic and checked (`CheckpointMixin`).

Saving writes the model's own code and card beside the weights and goes through `checkpoint_integrity.atomic_save`.
Loading reads a local folder through `checkpoint_integrity.consistent_checkpoint` (the files of one save, checked
against its manifest) and also refuses what transformers would load silently wrong: a config.json that is not
JSON or of another model type, and a weights file safetensors cannot read, each with an error naming the file.
Weights the checkpoint lacks or has in excess are reported and initialised as transformers does (its warnings and
`output_loading_info`); `strict=True` makes them an error naming the keys. A weight of another shape raises
(`CheckpointShapeError`, a RuntimeError as in transformers) unless `ignore_mismatched_sizes=True`. A loaded model
holds its weights in fresh, 64-byte-aligned memory, not in the file's memory map: the matrix-product kernels then
take the same paths as for the model that was saved, so it computes bit for bit what that model did.
"""

import json
import os
import tempfile
from pathlib import Path

import torch
from huggingface_hub import HfApi
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedConfig
from transformers.modeling_utils import _add_variant
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from .checkpoint_integrity import (
    MANIFEST,
    STAGING_PREFIX,
    CheckpointError,
    atomic_save,
    consistent_checkpoint,
    verify_remote_checkpoint,
)
from .hub import CARD_TEMPLATE, auto_map, model_card, write_own_code

HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
KEYS_SHOWN = 8
ALIGNMENT = 64  # bytes: what torch's CPU allocator gives, and what vectorised kernels read fastest


class CheckpointShapeError(CheckpointError, RuntimeError):
    """A weight of the checkpoint has another shape than in the model (a RuntimeError, as transformers raises)."""


class CheckpointMixin:
    """The save, push and load of every xlstm_hf model (mixed into `XLSTMPreTrainedModel`)."""

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, push_to_hub: bool = False,
                        **kwargs):
        """transformers' save, plus the model's own code (it then loads with `trust_remote_code=True` where xlstm_hf
        is not installed; `config.auto_map` names every Auto class it loads with) and a model card (README.md,
        unless the folder has one), all switched into place in one step with their manifest (checkpoint.sha256),
        so that the folder holds either the old or the new checkpoint, whenever the save stops. With `push_to_hub`,
        what it wrote is then uploaded (`repo_id` and the other arguments of `push_to_hub`)."""
        self.config.auto_map = auto_map(self)
        folder = Path(save_directory)
        saves_here = getattr(self, "should_save_on_this_rank", lambda main: main)(is_main_process)
        hub_arguments = {name: kwargs.pop(name) for name in PUSH_ARGUMENTS if name in kwargs}
        if not saves_here or kwargs.get("distributed_checkpoint") or folder.is_file():
            # other ranks only take part in gathering the weights; every rank writes a distributed checkpoint
            super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
            if saves_here and folder.is_dir():
                self._write_code_and_card(folder, folder)
        else:
            with atomic_save(folder, kwargs.get("variant")) as staging:
                super().save_pretrained(staging, *args, is_main_process=is_main_process, **kwargs)
                self._write_code_and_card(staging, folder)
        if push_to_hub and saves_here:
            upload(folder, hub_arguments.pop("repo_id", folder.resolve().name), **hub_arguments)

    def _write_code_and_card(self, target: Path, folder: Path) -> None:
        """The model's own code into `target`, and its card as target/README.md unless `folder` (the one saved to)
        has a README.md already."""
        write_own_code(target)
        if CARD_TEMPLATE.is_file() and not (folder / "README.md").exists():
            model_card(self).save(target / "README.md")

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, revision: str | None = None, create_pr: bool = False,
                    max_shard_size: str | int = "50GB", **kwargs):
        """Upload what `save_pretrained` writes (weights, config, the model's own code, its card, the manifest) to
        the Hub repository `repo_id`, created if needed."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, max_shard_size=max_shard_size, **kwargs)
            return upload(Path(folder), repo_id, commit_message=commit_message or f"Upload {type(self).__name__}",
                          private=private, token=token, revision=revision, create_pr=create_pr)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, strict: bool = False, **kwargs):
        """transformers' loading, from the files of one save (see the module docstring), refusing damaged files;
        `strict=True` also refuses missing and unexpected weights, naming them."""
        return load_checked(super().from_pretrained, cls, pretrained_model_name_or_path, args, kwargs, strict)


PUSH_ARGUMENTS = ("repo_id", "commit_message", "private", "token", "revision", "create_pr")


def upload(folder: Path, repo_id: str, *, commit_message: str | None = None, private: bool | None = None,
           token: str | None = None, revision: str | None = None, create_pr: bool = False):
    """Upload `folder` to the Hub repository `repo_id` (created if needed), leaving out the staging folders of
    saves that are running or were killed."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message or "Upload model",
                             revision=revision, create_pr=create_pr, ignore_patterns=[f"{STAGING_PREFIX}*"])


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_checked(load, model_class: type, path_or_repo, args: tuple, kwargs: dict, strict: bool):
    """`load(path_or_repo, *args, **kwargs)` (transformers' from_pretrained) from the files of one save, with
    the checks of the module docstring before (the files) and after (the weights it loaded)."""
    kwargs = dict(kwargs)
    local = _local_folder(path_or_repo, kwargs)
    reads_files = path_or_repo is not None and not kwargs.get("gguf_file") and kwargs.get("state_dict") is None
    if local is None or not reads_files:
        if reads_files:
            hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
            verify_remote_checkpoint(path_or_repo, lambda name: _optional_file(path_or_repo, name, hub_kwargs),
                                     kwargs.get("variant"))
        return _load_and_check(load, model_class, path_or_repo, path_or_repo, args, kwargs, strict)
    kwargs.pop("subfolder", None)
    with consistent_checkpoint(local, kwargs.get("variant")) as view:
        return _load_and_check(load, model_class, view, local, args, kwargs, strict)


def _local_folder(path_or_repo, kwargs: dict) -> Path | None:
    if path_or_repo is None or not os.path.isdir(path_or_repo):
        return None
    return Path(path_or_repo, kwargs.get("subfolder") or "")


def _load_and_check(load, model_class: type, source, shown, args: tuple, kwargs: dict, strict: bool):
    """Load from `source` (a folder, repo id, or None), naming files as in `shown` (where the user's folder is)."""
    config = kwargs.get("config")
    saved_class, key_files, described = None, {}, "the state_dict passed"
    if isinstance(config, PreTrainedConfig):
        saved_class = (config.architectures or [None])[0]
    if kwargs.get("state_dict") is not None:
        key_files = dict.fromkeys(kwargs["state_dict"], described)
    hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
    if source is not None and not kwargs.get("gguf_file") and kwargs.get("state_dict") is None:
        rename = _renamer(source, shown)
        config_source = config if isinstance(config, (str, os.PathLike)) else source
        saved, config_file = read_config(config_source, hub_kwargs, rename,
                                         required=not isinstance(config, PreTrainedConfig))
        if saved is not None:
            if not isinstance(config, PreTrainedConfig):
                check_model_type(saved, rename(config_file), model_class)
            saved_class = (saved.get("architectures") or [saved_class])[0]
        files = weight_files(source, hub_kwargs, kwargs.get("variant"), rename)
        key_files = {key: rename(path) for key, path in checkpoint_keys(files, rename).items()}
        described = (rename(next(iter(files.values()))) if len(files) == 1 else
                     f"the weights files {', '.join(files)} of {shown}" if files else str(shown))
    output_loading_info = kwargs.pop("output_loading_info", False)
    ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
    model, loading_info = load(source, *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    if source != shown:  # read through a private folder: the model came from the user's
        model.config._name_or_path = model.name_or_path = str(shown)
    check_loading_info(model, loading_info, source=described, key_files=key_files, saved_class=saved_class,
                       strict=strict, ignore_mismatched_sizes=ignore_mismatched_sizes)
    copy_into_aligned_memory(model)
    return (model, loading_info) if output_loading_info else model


def _renamer(source, shown):
    """A path inside `source` (the private folder a checkpoint is read through) as the same file of `shown`."""
    if source == shown:
        return lambda path: path
    prefix = os.path.join(str(source), "")
    return lambda path: path if path is None else str(path).replace(prefix, os.path.join(str(shown), ""), 1)


def copy_into_aligned_memory(model: nn.Module) -> None:
    """Weights and buffers on the CPU that sit in a memory map at an address not aligned to ALIGNMENT bytes
    (safetensors aligns tensors to 8) get a copy of their own, as a model built in memory has (the module
    docstring says why). Tied weights stay tied: each parameter is copied once."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if type(tensor.data) is torch.Tensor and tensor.device.type == "cpu" and tensor.data_ptr() % ALIGNMENT:
            tensor.data = tensor.data.clone()


def _optional_file(path_or_repo, name: str, hub_kwargs: dict) -> str | None:
    """The local path of file `name` of a folder or Hub repo, or None where it has none."""
    return cached_file(path_or_repo, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)


def read_config(path_or_repo, hub_kwargs: dict, rename, required: bool = True) -> tuple[dict | None, str | None]:
    """(config.json as a dict, its path). A file that is not a JSON object raises, or gives (None, path) where the
    config is not `required` (the caller passed one)."""
    config_file = (
        cached_file(path_or_repo, "config.json", **hub_kwargs)
        if required
        else _optional_file(path_or_repo, "config.json", hub_kwargs)
    )
    if config_file is None:
        return None, None
    try:
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError(f"a JSON {type(config).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        if not required:
            return None, config_file
        raise CheckpointError(
            f"{rename(config_file)} is not a valid config (not a JSON object: {error}). Restore the checkpoint's "
            "config.json, or save the model again."
        ) from None
    return config, config_file


def check_model_type(config: dict, config_file: str, model_class: type) -> None:
    """config.json must describe a model of the class's model type (where it names one)."""
    found, model_type, class_name = config.get("model_type"), model_class.config_class.model_type, model_class.__name__
    if found in (None, model_type):
        return
    if found == "xlstm":
        fix = ("load it with XLSTMForCausalLM (which converts transformers' built-in xLSTM checkpoints), or convert "
               "it once with scripts/convert_transformers_xlstm.py")
    else:
        fix = (f"load it with its own model class (the AutoModel classes pick it), or point {class_name} at an "
               "xlstm_hf checkpoint")
    raise CheckpointError(
        f"{config_file} describes a model of type {found!r}, not {model_type!r}; {class_name} cannot load it: {fix}."
    )


def weight_files(path_or_repo, hub_kwargs: dict, variant: str | None, rename) -> dict[str, str]:
    """{file name: local path} of the checkpoint's safetensors weights (the shards its index names), or {} where
    it has none (transformers then reports what it finds instead)."""
    single = _optional_file(path_or_repo, _add_variant(SAFE_WEIGHTS_NAME, variant), hub_kwargs)
    if single is not None:
        return {Path(single).name: single}
    index_file = _optional_file(path_or_repo, _add_variant(SAFE_WEIGHTS_INDEX_NAME, variant), hub_kwargs)
    if index_file is None:
        return {}
    try:
        with open(index_file, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{rename(index_file)} is not a valid index of weights files ({type(error).__name__}: {error}). Restore "
            "it, or save the model again."
        ) from None
    files = {}
    for shard in shards:
        path = _optional_file(path_or_repo, shard, hub_kwargs)
        if path is None:
            raise CheckpointError(f"{rename(index_file)} names the weights file {shard}, which the checkpoint lacks; "
                                  "restore it, or save the model again.")
        files[shard] = path
    return files


def checkpoint_keys(files: dict[str, str], rename) -> dict[str, str]:
    """{weight name: path of the file that holds it}, from the safetensors headers (which safetensors checks
    against the file's length). A file it cannot read raises, naming it."""
    keys = {}
    for path in files.values():
        try:
            with safe_open(path, framework="pt") as f:
                keys.update(dict.fromkeys(f.keys(), path))
        except Exception as error:  # safetensors' SafetensorError and OSError
            raise CheckpointError(
                f"{rename(path)} is not a readable safetensors file ({error}): it is truncated or damaged. Restore it "
                "(download it again), or save the model again."
            ) from None
    return keys


# ---------------------------------------------------------------------------------------------------
# Loading: the weights against the model
# ---------------------------------------------------------------------------------------------------


def check_loading_info(
    model: nn.Module,
    loading_info: dict,
    *,
    source: str,
    key_files: dict[str, str],
    saved_class: str | None,
    strict: bool,
    ignore_mismatched_sizes: bool,
) -> None:
    """Raise for weights of another shape (unless `ignore_mismatched_sizes`), and with `strict` for weights
    missing from the checkpoint or in excess of the model. `source` names the checkpoint, `key_files` the file of
    each checkpoint key, `saved_class` the class that saved it (config.json's `architectures`), where known."""
    class_name = type(model).__name__
    if not ignore_mismatched_sizes and loading_info["mismatched_keys"]:
        described = [
            f"{key} {tuple(saved)} in {_file_of(key, model, key_files, source)}, {tuple(expected)} in the model"
            for key, saved, expected in sorted(loading_info["mismatched_keys"], key=lambda item: item[0])
        ]
        raise CheckpointShapeError(
            f"{len(described)} weight(s) of the checkpoint have another shape than in {class_name}: "
            f"{_listed(described)}. Its config.json does not describe these weights (restore it, or save the model "
            "again); to initialise them anew on purpose (e.g. another number of labels), pass "
            "ignore_mismatched_sizes=True."
        )
    if not strict:
        return
    same_class = saved_class == class_name
    missing = set(loading_info["missing_keys"])
    if not same_class:  # a checkpoint of another class (or of unknown class)
        missing = {key for key in missing if not _new_in_this_class(key, model, key_files)}
    if missing:
        raise CheckpointError(
            f"{source} lacks {len(missing)} weight(s) that {class_name} needs: {_listed(sorted(missing))}. The file "
            "is truncated or edited, or its config.json does not describe these weights: restore the checkpoint or "
            "save the model again (leave out strict=True to load anyway with these weights initialised anew)."
        )
    unexpected = sorted(loading_info["unexpected_keys"]) if same_class else []
    if unexpected:
        raise CheckpointError(
            f"{source} holds {len(unexpected)} weight(s) that {class_name} does not have: {_listed(unexpected)}. Its "
            "config.json does not describe these weights (e.g. num_hidden_layers was changed): restore it, or leave "
            "out strict=True to leave them out."
        )


def _new_in_this_class(key: str, model: nn.Module, key_files: dict[str, str]) -> bool:
    """Whether weight `key` of `model` may be missing from a checkpoint of another class: it lies outside the base
    model (a head), or in a part of the base model (a child module) of which the checkpoint holds no weight at all.
    """
    base_prefix = f"{model.base_model_prefix}."
    is_base_model = model.base_model is model
    if not is_base_model and not key.startswith(base_prefix):
        return True
    saved_parts = {name.removeprefix(base_prefix).split(".")[0] for name in key_files}
    part = (key if is_base_model else key.removeprefix(base_prefix)).split(".")[0]
    return bool(key_files) and part not in saved_parts


def _file_of(key: str, model: nn.Module, key_files: dict[str, str], source: str) -> str:
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    return key_files.get(key) or key_files.get(key.removeprefix(prefix)) or key_files.get(prefix + key) or source


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:KEYS_SHOWN])
    return shown + (f" and {len(items) - KEYS_SHOWN} more" if len(items) > KEYS_SHOWN else "")


__all__ = ["MANIFEST", "CheckpointError", "CheckpointMixin", "CheckpointShapeError"]
