"""TiRex checkpoints (NX-AI's zero-shot forecaster) read into `XLSTMForTimeSeriesPrediction`.

A TiRex checkpoint is the PyTorch-Lightning file `model.ckpt`, without config.json: a dict with
`hyper_parameters` (`model_config`: patch sizes, quantile levels, `block_kwargs` of the sLSTM stack, the
width of the patch MLPs; `train_ctx_len`: the window) and `state_dict`. It is read with
`torch.load(weights_only=True)` and converted in memory into our config (`forecaster="tirex"`, sLSTM blocks
of the Large family, `slstm_bf16_rounding=True`) and weights (see `tirex_weights` for the layout); nothing
of the checkpoint is executed, and no weights ship with xlstm_hf. docs/tirex.md describes the model.

The published weights are under the NXAI Community License; see the README for what downloading them
accepts.
"""

import os

import torch
from transformers.utils import cached_file

from .checkpoint_integrity import CheckpointError
from .checkpoint_mapping import load_converted_weights
from .configuration_xlstm import XLSTMConfig

CHECKPOINT_NAME = "model.ckpt"
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
# TiRex's sLSTM blocks as our Large blocks: RMSNorm eps 1e-6, per-head (group) norm eps 1e-5, no conv, no biases
BLOCK_SETTINGS = {"block_family": "large", "norm_eps": 1e-6, "slstm_norm_eps": 1e-5, "slstm_conv_kernel_size": 0,
                  "use_bias": False, "add_out_norm": True, "round_up_to_multiple_of": 64}
DEFAULT_FFN_PROJ_FACTOR = 2.6667  # the feed-forward factor of TiRex's blocks when block_kwargs names none
REQUIRED_HYPER_PARAMETERS = ("input_patch_size", "output_patch_size", "quantiles", "block_kwargs", "input_ff_dim")
REQUIRED_BLOCK_KWARGS = ("embedding_dim", "num_blocks", "num_heads")


# ---------------------------------------------------------------------------------------------------
# Finding a checkpoint
# ---------------------------------------------------------------------------------------------------


def find_tirex_checkpoint(path_or_repo: str | os.PathLike, **hub_kwargs) -> str | None:
    """The local path of the TiRex checkpoint that `path_or_repo` names, or None where it names something
    else (an ordinary folder with config.json, or nothing found: the regular loader then reports it).

    `path_or_repo`: a checkpoint file, a folder holding `model.ckpt` and no config.json, or a Hub repo id
    of that kind (through the Hub cache, so `HF_HUB_OFFLINE=1` works once it is downloaded)."""
    path = str(path_or_repo)
    if os.path.isfile(path):
        return path
    try:
        if _cached(path, "config.json", hub_kwargs) is not None:
            return None
        return _cached(path, CHECKPOINT_NAME, hub_kwargs)
    except (OSError, ValueError):  # not found, unreachable or not a repo id
        return None


def _cached(path_or_repo: str, filename: str, hub_kwargs: dict) -> str | None:
    return cached_file(path_or_repo, filename, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False, **hub_kwargs)


# ---------------------------------------------------------------------------------------------------
# Reading and converting
# ---------------------------------------------------------------------------------------------------


def read_tirex_checkpoint(path: str, **overrides) -> tuple[XLSTMConfig, dict[str, torch.Tensor]]:
    """(our config, our state dict) of the TiRex checkpoint file `path`, config fields in `overrides` set
    otherwise; CheckpointError naming what is wrong where it is not a TiRex checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (pickle and zip errors of every kind)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                              "a TiRex checkpoint is the model.ckpt of NX-AI/TiRex.") from error
    if not isinstance(checkpoint, dict) or not {"hyper_parameters", "state_dict"} <= checkpoint.keys():
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not a TiRex checkpoint: expected a dict with 'hyper_parameters' and "
                              f"'state_dict' (a Lightning checkpoint), found {found}.")
    config = config_from_tirex(checkpoint["hyper_parameters"], path, **overrides)
    return config, tirex_weights(checkpoint["state_dict"], config, path)


def config_from_tirex(hyper_parameters: dict, path: str = "the checkpoint", **overrides) -> XLSTMConfig:
    """Our config for TiRex's `hyper_parameters` (`model_config` and `train_ctx_len`), with the config
    fields in `overrides` set otherwise (those of the architecture must stay TiRex's)."""
    model_config = hyper_parameters.get("model_config") if isinstance(hyper_parameters, dict) else None
    if not isinstance(model_config, dict):
        raise CheckpointError(f"{path}: hyper_parameters has no 'model_config' dict; it is not a TiRex checkpoint.")
    missing = [name for name in REQUIRED_HYPER_PARAMETERS if name not in model_config]
    block_kwargs = model_config.get("block_kwargs", {})
    missing += [f"block_kwargs.{name}" for name in REQUIRED_BLOCK_KWARGS if name not in block_kwargs]
    window = hyper_parameters.get("train_ctx_len", model_config.get("train_ctx_len"))
    missing += ["train_ctx_len"] if window is None else []
    if missing:
        raise CheckpointError(f"{path}: the TiRex hyper-parameters {missing} are missing from "
                              "hyper_parameters['model_config'] (train_ctx_len: beside it).")
    if model_config["input_patch_size"] != model_config["output_patch_size"]:
        raise CheckpointError(f"{path}: input_patch_size={model_config['input_patch_size']} differs from "
                              f"output_patch_size={model_config['output_patch_size']}; TiRex needs them equal.")
    if block_kwargs.get("all_slstm", True) is not True:
        raise CheckpointError(f"{path}: block_kwargs.all_slstm={block_kwargs['all_slstm']!r}; only the all-sLSTM "
                              "stack of TiRex converts.")
    patch, num_blocks = model_config["input_patch_size"], block_kwargs["num_blocks"]
    settings = dict(
        vocab_size=None,
        hidden_size=block_kwargs["embedding_dim"],
        num_hidden_layers=num_blocks,
        num_heads=block_kwargs["num_heads"],
        layer_types=["slstm"] * num_blocks,
        ffn_proj_factor=block_kwargs.get("ffn_proj_factor", DEFAULT_FFN_PROJ_FACTOR),
        slstm_bf16_rounding=True,
        context_length=window,
        prediction_length=patch,
        patch_length=patch,
        patch_stride=patch,
        num_input_channels=1,
        scaling="std",
        loss="quantile",
        quantiles=[float(level) for level in model_config["quantiles"]],
        forecaster="tirex",
        patch_ffn_size=model_config["input_ff_dim"],
        **BLOCK_SETTINGS,
    )
    try:
        config = XLSTMConfig(**settings)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: its TiRex hyper-parameters make no valid model: {error}") from error
    return XLSTMConfig(**(settings | overrides)) if overrides else config


def expected_shapes(config: XLSTMConfig) -> dict[str, tuple[int, ...]]:
    """The TiRex state dict (keys without the `block_stack.` prefix) that `config` describes."""
    hidden, heads, ffn = config.hidden_size, config.slstm_num_heads, config.ffn_size
    head_dim, patch, mlp = hidden // heads, config.patch_length, config.patch_ffn_size
    outputs = len(config.quantiles) * patch
    shapes = {}
    for name, width_in, width_out in (("input_patch_embedding", 2 * patch, hidden),
                                      ("output_patch_embedding", hidden, outputs)):
        shapes |= {f"{name}.hidden_layer.weight": (mlp, width_in), f"{name}.hidden_layer.bias": (mlp,),
                   f"{name}.output_layer.weight": (width_out, mlp), f"{name}.output_layer.bias": (width_out,),
                   f"{name}.residual_layer.weight": (width_out, width_in), f"{name}.residual_layer.bias": (width_out,)}
    for idx in range(config.num_hidden_layers):
        block = f"blocks.{idx}."
        shapes |= {block + f"slstm_layer.{gate}.weight": (heads, head_dim, head_dim)
                   for gate in ("fgate", "igate", "zgate", "ogate")}
        shapes |= {
            block + "norm_slstm.weight": (hidden,),
            block + "slstm_layer.slstm_cell._recurrent_kernel_": (heads, head_dim, 4 * head_dim),
            block + "slstm_layer.slstm_cell._bias_": (4 * hidden,),
            block + "slstm_layer.group_norm.weight": (hidden,),
            block + "norm_ffn.weight": (hidden,),
            block + "ffn.proj_up_gate.weight": (ffn, hidden),
            block + "ffn.proj_up.weight": (ffn, hidden),
            block + "ffn.proj_down.weight": (hidden, ffn),
        }
    shapes["out_norm.weight"] = (hidden,)
    return shapes


def tirex_weights(state_dict: dict, config: XLSTMConfig, path: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Our `XLSTMForTimeSeriesPrediction` state dict from TiRex's, checked key by key and shape by shape.

    The layout differences: TiRex's sLSTM layer feeds its `fgate` projection into the input gate and its
    `igate` into the forget gate (ours are named after the gate they feed); its recurrent kernel
    [H, D, 4 D] and bias [4 H D] are head-major with the gates (i, f, z, o) inside a head, our [H, D, 4, D]
    and [H, 4, D]; its per-head norm stores the weight as an offset from 1; its feed-forward has separate
    gate and up projections, ours one stacked up-projection."""
    state = {key.removeprefix("block_stack."): value for key, value in state_dict.items()}
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{key} {list(state[key].shape)} (expected {list(shape)})" for key, shape in expected.items()
                 if key in state and tuple(state[key].shape) != shape]
    if missing or unexpected or misshapen:
        raise CheckpointError(
            f"{path}: the weights do not match its TiRex hyper-parameters: missing {_listed(missing)}, "
            f"unexpected {_listed(unexpected)}, wrong shapes {_listed(misshapen)}."
        )
    head_dim = config.hidden_size // config.slstm_num_heads
    weights = {}
    for theirs, ours in (("input_patch_embedding", "patch_embedding.projection"), ("output_patch_embedding", "head")):
        for layer, our_layer in (("hidden_layer", "fc1"), ("output_layer", "fc2"), ("residual_layer", "skip")):
            for kind in ("weight", "bias"):
                weights[f"{ours}.{our_layer}.{kind}"] = state[f"{theirs}.{layer}.{kind}"]
    for idx in range(config.num_hidden_layers):
        theirs, ours = f"blocks.{idx}.", f"backbone.blocks.{idx}."
        layer, cell = theirs + "slstm_layer.", theirs + "slstm_layer.slstm_cell."
        weights |= {
            ours + "norm.weight": state[theirs + "norm_slstm.weight"],
            ours + "mixer.igate.weight": state[layer + "fgate.weight"],
            ours + "mixer.fgate.weight": state[layer + "igate.weight"],
            ours + "mixer.zgate.weight": state[layer + "zgate.weight"],
            ours + "mixer.ogate.weight": state[layer + "ogate.weight"],
            ours + "mixer.recurrent_kernel": state[cell + "_recurrent_kernel_"].unflatten(-1, (4, head_dim)),
            ours + "mixer.bias": state[cell + "_bias_"].view(-1, 4, head_dim),
            ours + "mixer.norm.weight": 1.0 + state[layer + "group_norm.weight"],
            ours + "ffn_norm.weight": state[theirs + "norm_ffn.weight"],
            ours + "ffn.proj_up.weight": torch.cat([state[theirs + "ffn.proj_up_gate.weight"],
                                                    state[theirs + "ffn.proj_up.weight"]]),
            ours + "ffn.proj_down.weight": state[theirs + "ffn.proj_down.weight"],
        }
    weights["backbone.out_norm.weight"] = state["out_norm.weight"]
    return weights


def _listed(keys: list[str], limit: int = 6) -> str:
    if not keys:
        return "none"
    return str(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ---------------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------------


def load_tirex(model_class, checkpoint: str, **kwargs):
    """A `model_class` (XLSTMForTimeSeriesPrediction) with the converted TiRex checkpoint, in eval mode.
    kwargs: `dtype` / `torch_dtype`, Hub arguments (used already), and config fields to override (e.g.
    `slstm_bf16_rounding=False`, `prediction_length=64`)."""
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
    overrides = {key: value for key, value in kwargs.items() if key not in HUB_KWARGS}
    unknown = sorted(key for key in overrides if key not in XLSTMConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"{unknown} are neither config fields nor loading arguments of a TiRex checkpoint; pass "
                        "dtype, Hub arguments (revision, cache_dir, ...) or XLSTMConfig fields.")
    config, weights = read_tirex_checkpoint(checkpoint, **overrides)
    model = model_class(config)
    load_converted_weights(model, weights)
    if dtype not in (None, "auto"):
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return model.eval()


__all__ = ["find_tirex_checkpoint", "load_tirex", "read_tirex_checkpoint", "tirex_weights"]
