"""Checkpoints that are either whole or refused: saving over a folder never loses the old checkpoint, and
loading never leaves weights silently at random.

Saving (`staged_save`): everything `save_pretrained` writes goes into a hidden staging folder inside the
target folder first; only once all of it is written are the files moved into place, one `os.replace` each
(atomic per file, same file system). A save that fails midway (a full disk, an error in the card) leaves
the old checkpoint as it was, and files the folder holds besides (a tokenizer, the user's README.md, which
is never replaced) are never touched. Weights files of the old checkpoint that the new one does not have
(other shards, a stale index) are removed after the moves.

Checksums (`write_checksums`, `verify_checksums`): safetensors checks its header and the file length but
has no checksum, so bytes changed inside the tensor data load without complaint. A save writes
`weights.sha256` beside the weights, in the format of `sha256sum` (`sha256sum -c weights.sha256` checks a
folder by hand), and loading verifies every listed file that is present; a folder without the file (saved
by other code, or the file deleted on purpose) is loaded without this check. The file is moved into place
last, so a save interrupted during its final moves is reported as a mismatch, not loaded half old, half new.
Hashing reads the weights once more (about a second per GB).

Loading (`load_checked`: `read_config`, `check_model_type`, `checkpoint_keys`, `check_loading_info`): a
config.json that is not JSON or belongs to another model type, and a weights file that safetensors cannot
read (truncated, damaged header) raise an error naming the file. transformers only warns about weights the
checkpoint lacks and initialises them at random; here a missing weight, a weight of another shape, or (for
a checkpoint of the same class) a weight the model does not have raise an error naming the keys and the
file. Weights are legitimately new only where the checkpoint was saved by another class, and then only
outside the base model (a classification head on a language-model checkpoint) or in a part of the base
model that the checkpoint lacks entirely (the token embedding of a base model loaded from a forecaster's
checkpoint). `ignore_mismatched_sizes=True` lets weights of another shape be initialised anew, as in
transformers; `strict=False` restores transformers' warnings for missing and unexpected keys.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import safe_open
from torch import nn
from transformers import PreTrainedConfig
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

CHECKSUM_FILE = "weights.sha256"
STAGING_PREFIX = ".xlstm_hf-saving-"
# the weights files of an unsharded or sharded save without variant: model.safetensors,
# model-00001-of-00002.safetensors, model.safetensors.index.json
WEIGHTS_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json")
KEYS_SHOWN = 8


class CheckpointError(OSError):
    """A checkpoint on disk that is damaged or does not match the model it is loaded into."""


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------


@contextmanager
def staged_save(folder: Path) -> Iterator[Path]:
    """Yield an empty staging folder inside `folder` to save into; when the block succeeds, move its files
    into `folder` (see the module docstring). On failure `folder` is left as it was (and removed again
    where this call created it)."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        yield staging
        publish(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, folder: Path) -> None:
    """Move every file of `staging` into `folder` (weights first, the checksums last; a README.md only where
    `folder` has none), then remove the weights files of an older save that this one did not write."""
    files = sorted(path.relative_to(staging) for path in staging.rglob("*") if path.is_file())
    files.sort(key=lambda name: (not WEIGHTS_FILE.fullmatch(str(name)), str(name) == CHECKSUM_FILE))
    for name in files:
        _sync(staging / name)
    for name in files:
        if str(name) == "README.md" and (folder / name).exists():
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, folder / name)
    written = {str(name) for name in files}
    if written & {SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME}:
        for path in folder.iterdir():
            if WEIGHTS_FILE.fullmatch(path.name) and path.name not in written and path.is_file():
                path.unlink()


def _sync(path: Path) -> None:
    """Flush the file to disk, so that the rename that publishes it never points at unwritten data."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """`folder/weights.sha256`: the sha256 of every safetensors file in `folder`, as `sha256sum` writes it."""
    lines = [f"{sha256_of(path)}  {path.name}\n" for path in sorted(folder.glob("*.safetensors"))]
    if lines:
        (folder / CHECKSUM_FILE).write_text("".join(lines))


# ---------------------------------------------------------------------------------------------------
# Loading: the files
# ---------------------------------------------------------------------------------------------------


def optional_file(path_or_repo, name: str, hub_kwargs: dict) -> str | None:
    """The local path of file `name` of a folder or Hub repo, or None where it has none."""
    return cached_file(path_or_repo, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs)


def read_config(path_or_repo, hub_kwargs: dict, required: bool = True) -> tuple[dict | None, str | None]:
    """(config.json as a dict, its path). A file that is not a JSON object raises, or gives (None, path)
    where the config is not `required` (the caller passed one)."""
    config_file = (
        cached_file(path_or_repo, "config.json", **hub_kwargs)
        if required
        else optional_file(path_or_repo, "config.json", hub_kwargs)
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
            f"{config_file} is not a valid config (not a JSON object: {error}). Restore the checkpoint's "
            "config.json, or save the model again."
        ) from None
    return config, config_file


def check_model_type(config: dict, config_file: str, class_name: str, model_type: str) -> None:
    """config.json must describe a model of `model_type` (where it names one)."""
    found = config.get("model_type")
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


def weight_files(path_or_repo, hub_kwargs: dict, variant: str | None = None) -> dict[str, str]:
    """{file name: local path} of the checkpoint's safetensors weights (the shards its index names), or {}
    where it has none (transformers then reports what it finds instead)."""
    weights_name, index_name = SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME
    if variant:
        weights_name = weights_name.replace(".safetensors", f".{variant}.safetensors")
        index_name = index_name.replace(".safetensors", f".{variant}.safetensors")
    single = optional_file(path_or_repo, weights_name, hub_kwargs)
    if single is not None:
        return {weights_name: single}
    index_file = optional_file(path_or_repo, index_name, hub_kwargs)
    if index_file is None:
        return {}
    try:
        with open(index_file, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{index_file} is not a valid index of weights files ({type(error).__name__}: {error}). Restore it, "
            "or save the model again."
        ) from None
    files = {}
    for shard in shards:
        path = optional_file(path_or_repo, shard, hub_kwargs)
        if path is None:
            raise CheckpointError(f"{index_file} names the weights file {shard}, which the checkpoint lacks; "
                                  "restore it, or save the model again.")
        files[shard] = path
    return files


def verify_checksums(path_or_repo, hub_kwargs: dict) -> None:
    """Compare every weights file listed in weights.sha256 (where the checkpoint has one) with its sha256."""
    listing = optional_file(path_or_repo, CHECKSUM_FILE, hub_kwargs)
    if listing is None:
        return
    with open(listing, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    for line in lines:
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if match is None:
            raise CheckpointError(
                f"{listing} is damaged (line {line[:80]!r} is not '<sha256>  <file>'). Restore it, save the model "
                f"again, or delete {CHECKSUM_FILE} to load without checking the weights."
            )
        expected, name = match.groups()
        path = optional_file(path_or_repo, name, hub_kwargs)
        if path is not None and sha256_of(path) != expected:
            raise CheckpointError(
                f"{path} does not match its sha256 in {CHECKSUM_FILE}, written when the checkpoint was saved: the "
                "file was damaged or changed since. Restore it or save the model again; if you replaced it on "
                f"purpose, delete {listing}."
            )


def checkpoint_keys(files: dict[str, str]) -> dict[str, str]:
    """{weight name: path of the file that holds it}, from the safetensors headers (which safetensors checks
    against the file's length). A file it cannot read raises, naming it."""
    keys = {}
    for path in files.values():
        try:
            with safe_open(path, framework="pt") as f:
                keys.update(dict.fromkeys(f.keys(), path))
        except Exception as error:  # safetensors' SafetensorError and OSError
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({error}): it is truncated or damaged. Restore it "
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
    base_model_class: type | None = None,
) -> None:
    """Raise where transformers' `loading_info` shows weights left at random (see the module docstring).
    `source` names the checkpoint, `key_files` the file of each checkpoint key, `saved_class` the class that
    saved it (config.json's `architectures`), where known; `base_model_class` is the class of the base model."""
    class_name = type(model).__name__
    same_class = saved_class == class_name
    if not ignore_mismatched_sizes and loading_info["mismatched_keys"]:
        described = [
            f"{key} {tuple(saved)} in {_file_of(key, model, key_files, source)}, {tuple(expected)} in the model"
            for key, saved, expected in sorted(loading_info["mismatched_keys"], key=lambda item: item[0])
        ]
        raise CheckpointError(
            f"{len(described)} weight(s) of the checkpoint have another shape than in {class_name}: "
            f"{_listed(described)}. Its config.json does not describe these weights (restore it, or save the model "
            "again); to initialise them anew on purpose (e.g. another number of labels), pass "
            "ignore_mismatched_sizes=True."
        )
    if not strict:
        return
    missing = set(loading_info["missing_keys"])
    if not same_class:  # a checkpoint of another class (or of unknown class)
        missing = {key for key in missing if not _new_in_this_class(key, model, key_files, base_model_class)}
    if missing:
        raise CheckpointError(
            f"{source} lacks {len(missing)} weight(s) that {class_name} needs: {_listed(sorted(missing))}. The file "
            "is truncated or edited, or its config.json does not describe these weights: restore the checkpoint or "
            "save the model again (pass strict=False to load anyway with these weights initialised at random)."
        )
    unexpected = sorted(loading_info["unexpected_keys"]) if same_class else []
    if unexpected:
        raise CheckpointError(
            f"{source} holds {len(unexpected)} weight(s) that {class_name} does not have: {_listed(unexpected)}. Its "
            "config.json does not describe these weights (e.g. num_hidden_layers was changed): restore it, or pass "
            "strict=False to leave them out."
        )


def _new_in_this_class(key: str, model: nn.Module, key_files: dict[str, str], base_model_class: type | None) -> bool:
    """Whether weight `key` of `model` may be missing from a checkpoint of another class: it lies outside
    the base model (a head), or in a part of the base model (a child module) of which the checkpoint holds
    no weight at all. A model without base model (the encoder-decoder) has no such weight."""
    base_prefix = f"{getattr(model, 'base_model_prefix', '')}."
    if base_model_class is not None and isinstance(model, base_model_class):
        prefix = ""
    elif isinstance(getattr(model, base_prefix[:-1], None), nn.Module):
        prefix = base_prefix
        if not key.startswith(prefix):
            return True
    else:
        return False
    saved_parts = {name.removeprefix(base_prefix).split(".")[0] for name in key_files}
    return bool(key_files) and key.removeprefix(prefix).split(".")[0] not in saved_parts


def _file_of(key: str, model: nn.Module, key_files: dict[str, str], source: str) -> str:
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    return key_files.get(key) or key_files.get(key.removeprefix(prefix)) or key_files.get(prefix + key) or source


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:KEYS_SHOWN])
    return shown + (f" and {len(items) - KEYS_SHOWN} more" if len(items) > KEYS_SHOWN else "")


def load_checked(load, model_class: type, path_or_repo, args: tuple, kwargs: dict, hub_kwargs: dict,
                 strict: bool, model_type: str, base_model_class: type | None = None):
    """`load(path_or_repo, *args, **kwargs)` (transformers' from_pretrained) with the checks of this module
    before (the files) and after (the weights it loaded)."""
    config = kwargs.get("config")
    has_files = path_or_repo is not None and not kwargs.get("gguf_file") and kwargs.get("state_dict") is None
    saved_class, key_files, source = None, {}, "the state_dict passed"
    if isinstance(config, PreTrainedConfig):
        saved_class = (config.architectures or [None])[0]
    if kwargs.get("state_dict") is not None:
        key_files = dict.fromkeys(kwargs["state_dict"], source)
    if has_files:
        config_source = config if isinstance(config, (str, os.PathLike)) else path_or_repo
        saved, config_file = read_config(config_source, hub_kwargs, required=not isinstance(config, PreTrainedConfig))
        if saved is not None:
            if not isinstance(config, PreTrainedConfig):
                check_model_type(saved, config_file, model_class.__name__, model_type)
            saved_class = (saved.get("architectures") or [saved_class])[0]
        verify_checksums(path_or_repo, hub_kwargs)
        files = weight_files(path_or_repo, hub_kwargs, kwargs.get("variant"))
        key_files = checkpoint_keys(files)
        if len(files) == 1:
            source = next(iter(files.values()))
        elif files:
            source = f"the weights files {', '.join(files)} of {path_or_repo}"
        else:
            source = str(path_or_repo)
    output_loading_info = kwargs.pop("output_loading_info", False)
    ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
    model, loading_info = load(
        path_or_repo, *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
    )
    check_loading_info(model, loading_info, source=source, key_files=key_files, saved_class=saved_class,
                       strict=strict, ignore_mismatched_sizes=ignore_mismatched_sizes,
                       base_model_class=base_model_class)
    return (model, loading_info) if output_loading_info else model
