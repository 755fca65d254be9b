"""Configs and state dicts of other xLSTM implementations, mapped onto ours.

* the official `xlstm` package: NeurIPS block stacks (`xLSTMBlockStack`, `xLSTMLMModel`) and `xLSTMLarge`;
* checkpoints of transformers' built-in xLSTM (`"model_type": "xlstm"`, the layout of NX-AI/xLSTM-7b).

Each mapping returns our config and our state dict; `load_converted_weights` puts them in a model.
The official package is never imported here: its models are read through their attributes.
"""

import json

import torch
from safetensors.torch import load_file
from transformers.utils import cached_file

from .configuration_xlstm import XLSTMConfig

OFFICIAL_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "relu^2": "relu2", "sigmoid": "sigmoid", "swish": "silu"}


# ---------------------------------------------------------------------------------------------------
# NeurIPS blocks (xLSTMBlockStack / xLSTMLMModel)
# ---------------------------------------------------------------------------------------------------


def config_from_official_stack(cfg, vocab_size: int | None) -> XLSTMConfig:
    """An `XLSTMConfig` equal to an official `xLSTMBlockStackConfig` / `xLSTMLMModelConfig`."""
    mlstm = cfg.mlstm_block.mlstm if cfg.mlstm_block is not None else None
    slstm = cfg.slstm_block.slstm if cfg.slstm_block is not None else None
    ffn = cfg.slstm_block.feedforward if cfg.slstm_block is not None else None
    roundings = {layer.round_proj_up_to_multiple_of for layer in (mlstm, ffn) if layer is not None} or {64}
    if len(roundings) > 1 or any(not layer.round_proj_up_dim_up for layer in (mlstm, ffn) if layer is not None):
        raise NotImplementedError("The mLSTM and feed-forward widths must both round up to the same multiple.")
    if slstm is not None and slstm.function != "slstm":
        raise NotImplementedError(f"Only the 'slstm' cell function converts, got {slstm.function!r}.")
    if ffn is not None and (ffn.bias and not cfg.bias or ffn.act_fn not in OFFICIAL_ACTIVATIONS):
        raise NotImplementedError("Feed-forward biases without block biases, or its activation, do not convert.")
    heads = mlstm.num_heads if mlstm is not None else slstm.num_heads
    return XLSTMConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.embedding_dim,
        num_hidden_layers=cfg.num_blocks,
        layer_types=["slstm" if kind == 1 else "mlstm" for kind in cfg.block_map],
        block_family="neurips",
        num_heads=heads,
        mlstm_proj_factor=mlstm.proj_factor if mlstm is not None else 2.0,
        qkv_proj_blocksize=mlstm.qkv_proj_blocksize if mlstm is not None else 4,
        conv_kernel_size=mlstm.conv1d_kernel_size if mlstm is not None else 4,
        slstm_num_heads=slstm.num_heads if slstm is not None else heads,
        slstm_conv_kernel_size=slstm.conv1d_kernel_size if slstm is not None else 4,
        ffn_proj_factor=ffn.proj_factor if ffn is not None else 0.0,
        ffn_act=OFFICIAL_ACTIVATIONS[ffn.act_fn] if ffn is not None else "gelu",
        round_up_to_multiple_of=roundings.pop(),
        use_bias=cfg.bias,
        add_out_norm=cfg.add_post_blocks_norm,
        dropout=cfg.dropout,
        embedding_dropout=cfg.dropout if getattr(cfg, "add_embedding_dropout", False) else 0.0,
        tie_word_embeddings=getattr(cfg, "tie_weights", False),
    )


def neurips_stack_weights(stack: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Our state dict (keys under `prefix`) from an official `xLSTMBlockStack`."""
    weights = {}
    for idx, block in enumerate(stack.blocks):
        block_prefix = f"{prefix}blocks.{idx}."
        weights[block_prefix + "norm.weight"] = block.xlstm_norm.weight_proxy
        if type(block.xlstm).__name__ == "mLSTMLayer":
            weights |= _mlstm_layer_weights(block.xlstm, block_prefix + "mixer.")
        else:
            weights |= _slstm_layer_weights(block.xlstm, block_prefix + "mixer.")
        if block.ffn is not None:
            weights[block_prefix + "ffn_norm.weight"] = block.ffn_norm.weight_proxy
            weights |= _weight_and_bias(block.ffn.proj_up, block_prefix + "ffn.proj_up")
            weights |= _weight_and_bias(block.ffn.proj_down, block_prefix + "ffn.proj_down")
    if not isinstance(stack.post_blocks_norm, torch.nn.Identity):
        weights[prefix + "out_norm.weight"] = stack.post_blocks_norm.weight_proxy
    return weights


def _mlstm_layer_weights(layer, prefix: str) -> dict[str, torch.Tensor]:
    cell = layer.mlstm_cell
    weights = {
        prefix + "gate_proj.weight": torch.cat([cell.igate.weight, cell.fgate.weight]),
        prefix + "gate_proj.bias": torch.cat([cell.igate.bias, cell.fgate.bias]),
        prefix + "norm.weight": _norm_weight(cell.outnorm),
        prefix + "skip": layer.learnable_skip,
    }
    if layer.conv1d.conv is not None:
        weights |= _weight_and_bias(layer.conv1d.conv, prefix + "conv")
    for name in ("proj_up", "q_proj", "k_proj", "v_proj", "proj_down"):
        weights |= _weight_and_bias(getattr(layer, name), prefix + name)
    return weights


def _slstm_layer_weights(layer, prefix: str) -> dict[str, torch.Tensor]:
    cell = layer.slstm_cell
    weights = {
        # the official layer feeds its `fgate` projection into the cell's input gate and `igate` into the
        # forget gate; ours are named after the gate they feed
        prefix + "igate.weight": layer.fgate.weight,
        prefix + "fgate.weight": layer.igate.weight,
        prefix + "zgate.weight": layer.zgate.weight,
        prefix + "ogate.weight": layer.ogate.weight,
        prefix + "recurrent_kernel": cell._recurrent_kernel_int2ext(cell._recurrent_kernel),  # [H, D, 4, D]
        prefix + "bias": cell._bias_int2ext(cell._bias),  # [H, 4, D]
        prefix + "norm.weight": _norm_weight(layer.group_norm),
    }
    if layer.config.conv1d_kernel_size > 0:
        weights |= _weight_and_bias(layer.conv1d.conv, prefix + "conv")
    return weights


def _norm_weight(norm) -> torch.Tensor:
    """The effective weight of an official norm (stored as an offset from 1; absent means 1)."""
    weight = norm.weight_proxy
    return weight if weight is not None else torch.ones(norm.ndim)


def _weight_and_bias(module, prefix: str) -> dict[str, torch.Tensor]:
    weights = {prefix + ".weight": module.weight}
    if getattr(module, "bias", None) is not None:
        weights[prefix + ".bias"] = module.bias
    return weights


# ---------------------------------------------------------------------------------------------------
# xLSTM-Large blocks (official xLSTMLarge and transformers' built-in xLSTM share the block layout)
# ---------------------------------------------------------------------------------------------------


def config_from_official_large(cfg) -> XLSTMConfig:
    """An `XLSTMConfig` equal to an official `xLSTMLargeConfig`."""
    return XLSTMConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.embedding_dim,
        num_hidden_layers=cfg.num_blocks,
        num_heads=cfg.num_heads,
        block_family="large",
        qk_dim_factor=cfg.qk_dim_factor,
        v_dim_factor=cfg.v_dim_factor,
        gate_soft_cap=cfg.gate_soft_cap or 0.0,
        chunk_size=cfg.chunk_size,
        mlstm_eps=cfg.eps,
        ffn_proj_factor=cfg.ffn_proj_factor,
        round_up_to_multiple_of=cfg.ffn_round_up_to_multiple_of,
        norm_eps=cfg.norm_eps,
        use_bias=cfg.use_bias,
        add_out_norm=cfg.add_out_norm,
        logit_soft_cap=cfg.output_logit_soft_cap or 0.0,
    )


def large_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our `XLSTMForCausalLM` state dict from an xLSTM-Large state dict (official or built-in names)."""
    fused = {  # ours <- official single-mode parts, in order, or the official fused-mode name
        "mixer.qkvo_proj": (("mlstm_layer.q", "mlstm_layer.k", "mlstm_layer.v", "mlstm_layer.ogate_preact"),
                            "mlstm_layer.qkv_opreact"),
        "mixer.gate_proj": (("mlstm_layer.igate_preact", "mlstm_layer.fgate_preact"), "mlstm_layer.ifgate_preact"),
        "ffn.proj_up": (("ffn.proj_up_gate", "ffn.proj_up"), "ffn.proj_up_gate_z"),
    }
    renamed = {"norm_mlstm": "norm", "norm_ffn": "ffn_norm", "mlstm_layer.multihead_norm": "mixer.norm",
               "mlstm_layer.out_proj": "mixer.out_proj", "ffn.proj_down": "ffn.proj_down"}  # theirs -> ours
    weights = {}
    embedding = state_dict.get("embedding.weight", state_dict.get("backbone.embeddings.weight"))
    weights["backbone.embeddings.weight"] = embedding
    weights["lm_head.weight"] = state_dict["lm_head.weight"]
    for name in ("weight", "bias"):
        if f"backbone.out_norm.{name}" in state_dict:
            weights[f"backbone.out_norm.{name}"] = state_dict[f"backbone.out_norm.{name}"]
    num_blocks = 1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("backbone.blocks."))
    for idx in range(num_blocks):
        source, target = f"backbone.blocks.{idx}.", f"backbone.blocks.{idx}."
        for ours, (parts, fused_name) in fused.items():
            for name in ("weight", "bias"):
                if f"{source}{fused_name}.{name}" in state_dict:
                    weights[f"{target}{ours}.{name}"] = state_dict[f"{source}{fused_name}.{name}"]
                elif f"{source}{parts[0]}.{name}" in state_dict:
                    weights[f"{target}{ours}.{name}"] = torch.cat([state_dict[f"{source}{p}.{name}"] for p in parts])
        for theirs, ours in renamed.items():
            for name in ("weight", "bias"):
                if f"{source}{theirs}.{name}" in state_dict:
                    weights[f"{target}{ours}.{name}"] = state_dict[f"{source}{theirs}.{name}"]
    return weights


def load_converted_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load converted weights strictly; a bias the source lacks but ours has is exactly zero."""
    expected = model.state_dict()
    unexpected = sorted(set(weights) - set(expected))
    missing = sorted(key for key in set(expected) - set(weights) if not key.endswith(".bias"))
    if unexpected or missing:
        raise ValueError(
            f"Weights do not match the converted architecture: missing {missing}, unexpected {unexpected}."
        )
    full = {key: weights.get(key, torch.zeros_like(value)) for key, value in expected.items()}
    with torch.no_grad():
        model.load_state_dict({key: value.detach().to(expected[key].dtype) for key, value in full.items()}, strict=True)


# ---------------------------------------------------------------------------------------------------
# transformers' built-in xLSTM checkpoints ("model_type": "xlstm")
# ---------------------------------------------------------------------------------------------------


def is_transformers_xlstm_checkpoint(path_or_repo: str, **hub_kwargs) -> bool:
    """Whether the folder or Hub repo holds a checkpoint of transformers' built-in xLSTM."""
    try:
        config_file = cached_file(
            path_or_repo, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )
    except OSError:  # not found or unreachable: the regular loader reports it in its own words
        return False
    if config_file is None:
        return False
    try:
        with open(config_file, encoding="utf-8") as f:
            return json.load(f).get("model_type") == "xlstm"
    except (ValueError, UnicodeDecodeError, AttributeError):  # not a JSON object: the regular loader reports it
        return False


def read_transformers_xlstm_checkpoint(path_or_repo: str, **hub_kwargs) -> tuple[XLSTMConfig, dict]:
    """(our config, our `XLSTMForCausalLM` state dict) of a built-in transformers xLSTM checkpoint."""
    with open(cached_file(path_or_repo, "config.json", **hub_kwargs)) as f:
        source_config = json.load(f)
    weights = large_weights(_load_safetensors(path_or_repo, **hub_kwargs))
    return config_from_transformers_xlstm(source_config, weights), weights


def load_transformers_xlstm_checkpoint(model_class: type, path_or_repo: str, kwargs: dict, hub_names: tuple):
    """A `model_class` (XLSTMForCausalLM) with the converted config and weights of a built-in transformers xLSTM
    checkpoint, in eval mode; of `from_pretrained`'s `kwargs` it takes `dtype` and the Hub arguments `hub_names`
    (anything else needs the converted checkpoint: scripts/convert_transformers_xlstm.py)."""
    unsupported = sorted(set(kwargs) - set(hub_names) - {"dtype", "torch_dtype", "strict"})
    if unsupported:
        raise TypeError(
            f"{unsupported} are not supported when loading a built-in transformers xLSTM checkpoint; convert it once "
            "with scripts/convert_transformers_xlstm.py, then load the result with any arguments."
        )
    config, weights = read_transformers_xlstm_checkpoint(
        path_or_repo, **{key: kwargs[key] for key in hub_names if key in kwargs}
    )
    model = model_class(config)
    load_converted_weights(model, weights)
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    if dtype not in (None, "auto"):
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return model.eval()


def config_from_transformers_xlstm(source: dict, weights: dict[str, torch.Tensor]) -> XLSTMConfig:
    """An `XLSTMConfig` from a built-in xLSTM `config.json`; the widths are read off the weights, since
    the built-in and the official code round the query/key width differently."""
    hidden = source.get("hidden_size") or source["embedding_dim"]
    v_size = weights["backbone.blocks.0.mixer.out_proj.weight"].shape[1]
    qk_size = (weights["backbone.blocks.0.mixer.qkvo_proj.weight"].shape[0] - 2 * v_size) // 2
    ffn_size = weights["backbone.blocks.0.ffn.proj_down.weight"].shape[1]
    config = XLSTMConfig(
        vocab_size=source["vocab_size"],
        hidden_size=hidden,
        num_hidden_layers=source.get("num_hidden_layers") or source["num_blocks"],
        num_heads=source["num_heads"],
        block_family="large",
        qk_dim_factor=_factor(qk_size, hidden),
        v_dim_factor=_factor(v_size, hidden),
        gate_soft_cap=source.get("gate_soft_cap") or 0.0,
        chunk_size=source.get("chunk_size", 64),
        mlstm_eps=source.get("eps", 1e-6),
        ffn_proj_factor=ffn_size / hidden,
        round_up_to_multiple_of=1,
        norm_eps=source.get("norm_eps", 1e-6),
        use_bias=source.get("use_bias", False),
        add_out_norm="backbone.out_norm.weight" in weights,
        logit_soft_cap=source.get("output_logit_soft_cap") or 0.0,
        tie_word_embeddings=source.get("tie_word_embeddings", False),
        pad_token_id=source.get("pad_token_id"),
        bos_token_id=source.get("bos_token_id"),
        eos_token_id=source.get("eos_token_id"),
    )
    if (config.mlstm_qk_size, config.mlstm_v_size, config.ffn_size) != (qk_size, v_size, ffn_size):
        raise ValueError(f"Could not express the widths {(qk_size, v_size, ffn_size)} of the checkpoint in a config.")
    return config


def _factor(size: int, hidden: int) -> float:
    """A factor f with int(hidden * f) == size, as the official code computes widths."""
    factor = size / hidden
    return factor if int(hidden * factor) == size else (size + 0.5) / hidden


def _load_safetensors(path_or_repo: str, **hub_kwargs) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded safetensors checkpoint."""
    index_file = cached_file(
        path_or_repo, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
    )
    if index_file is None:
        return load_file(cached_file(path_or_repo, "model.safetensors", **hub_kwargs))
    with open(index_file) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    state_dict = {}
    for shard in shards:
        state_dict |= load_file(cached_file(path_or_repo, shard, **hub_kwargs))
    return state_dict


__all__ = [
    "config_from_official_large",
    "config_from_official_stack",
    "is_transformers_xlstm_checkpoint",
    "large_weights",
    "load_converted_weights",
    "load_transformers_xlstm_checkpoint",
    "neurips_stack_weights",
    "read_transformers_xlstm_checkpoint",
]
