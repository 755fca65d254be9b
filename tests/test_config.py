"""XLSTMConfig: per-family defaults, serialisation round trips, the Auto classes, and the ValueErrors of
invalid configurations."""

import pytest
from transformers import AutoConfig

import xlstm_hf  # noqa: F401  (registers the "xlstm_hf" model type with the Auto classes)
from xlstm_hf import XLSTMConfig


def mixed_config():
    """A config away from the defaults in most fields."""
    return XLSTMConfig(
        block_family="large",
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=3,
        num_heads=2,
        layer_types=["mlstm", "slstm", "mlstm"],
        slstm_num_heads=4,
        chunk_size=16,
        gate_soft_cap=0.0,
        dropout=0.1,
        pad_token_id=0,
        eos_token_id=[1, 2],
    )


# ---- defaults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("neurips", {"norm_type": "layernorm", "norm_eps": 1e-5, "ffn_act": "gelu", "ffn_proj_factor": 1.3,
                     "gate_soft_cap": 0.0, "logit_soft_cap": 0.0}),
        ("large", {"norm_type": "rmsnorm", "norm_eps": 1e-6, "ffn_act": "silu", "ffn_proj_factor": 2.667,
                   "gate_soft_cap": 15.0, "logit_soft_cap": 30.0}),
    ],
)
def test_defaults_resolve_per_block_family(family, expected):
    config = XLSTMConfig(block_family=family)
    assert {name: getattr(config, name) for name in expected} == expected


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_explicit_values_win_over_family_defaults(family):
    explicit = {"norm_type": "rmsnorm" if family == "neurips" else "layernorm", "norm_eps": 1e-3, "ffn_act": "relu",
                "ffn_proj_factor": 2.0, "gate_soft_cap": 5.0, "logit_soft_cap": 7.0}
    config = XLSTMConfig(block_family=family, **explicit)
    assert {name: getattr(config, name) for name in explicit} == explicit


def test_explicit_zero_soft_caps_win_over_large_defaults():
    config = XLSTMConfig(block_family="large", gate_soft_cap=0.0, logit_soft_cap=0.0)
    assert (config.gate_soft_cap, config.logit_soft_cap) == (0.0, 0.0)


def test_layer_types_default_to_all_mlstm():
    assert XLSTMConfig(num_hidden_layers=3).layer_types == ["mlstm", "mlstm", "mlstm"]


def test_slstm_num_heads_defaults_to_num_heads():
    assert XLSTMConfig(num_heads=8).slstm_num_heads == 8


# ---- serialisation and the Auto classes --------------------------------------------------------------


def test_dict_round_trip():
    config = mixed_config()
    assert XLSTMConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def without_name_or_path(config_dict):
    """from_pretrained records where it loaded from in `_name_or_path`; that is not a setting."""
    return {key: value for key, value in config_dict.items() if key != "_name_or_path"}


def test_save_and_load_round_trip(tmp_path):
    config = mixed_config()
    config.save_pretrained(tmp_path)
    loaded = XLSTMConfig.from_pretrained(tmp_path)
    assert without_name_or_path(loaded.to_dict()) == without_name_or_path(config.to_dict())


def test_auto_config_from_pretrained_gives_xlstm_config(tmp_path):
    config = mixed_config()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, XLSTMConfig)
    assert without_name_or_path(loaded.to_dict()) == without_name_or_path(config.to_dict())


def test_auto_config_for_model():
    config = AutoConfig.for_model("xlstm_hf", hidden_size=128, num_hidden_layers=2, block_family="large")
    assert isinstance(config, XLSTMConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.norm_eps) == (128, 2, 1e-6)


def test_attribute_map_aliases():
    config = XLSTMConfig(num_heads=8, num_hidden_layers=5)
    assert config.num_attention_heads == config.num_heads == 8
    assert config.num_blocks == config.num_hidden_layers == 5


# ---- invalid configurations --------------------------------------------------------------------------

INVALID_CONFIGS = [
    # (keyword arguments, the field the message must name)
    ({"num_hidden_layers": 2, "layer_types": ["mlstm"]}, "layer_types"),
    ({"num_hidden_layers": 2, "layer_types": ["mlstm", "attention"]}, "layer_types"),
    ({"block_family": "small"}, "block_family"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"hidden_size": -64}, "hidden_size"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"num_hidden_layers": -1}, "num_hidden_layers"),
    ({"num_heads": 0}, "num_heads"),
    ({"slstm_num_heads": 0}, "slstm_num_heads"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"qkv_proj_blocksize": 0}, "qkv_proj_blocksize"),
    ({"round_up_to_multiple_of": 0}, "round_up_to_multiple_of"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"conv_kernel_size": -1}, "conv_kernel_size"),
    ({"slstm_conv_kernel_size": -1}, "slstm_conv_kernel_size"),
    ({"mlstm_proj_factor": 0.0}, "mlstm_proj_factor"),
    ({"qk_dim_factor": 0.0}, "qk_dim_factor"),
    ({"v_dim_factor": -1.0}, "v_dim_factor"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"mlstm_eps": 0.0}, "mlstm_eps"),
    ({"ffn_proj_factor": -1.0}, "ffn_proj_factor"),
    # neurips: inner size = 2 * 64 rounded up to 64 = 128
    ({"hidden_size": 64, "num_heads": 3}, "num_heads"),
    ({"hidden_size": 64, "qkv_proj_blocksize": 3}, "qkv_proj_blocksize"),
    # large: qk width int(64 * 0.5) = 32, v width int(64 * 1.0) = 64, int(64 * 0.53) = 33
    ({"block_family": "large", "hidden_size": 64, "num_heads": 3}, "num_heads"),
    ({"block_family": "large", "hidden_size": 64, "num_heads": 64}, "num_heads"),
    ({"block_family": "large", "hidden_size": 64, "v_dim_factor": 0.53}, "num_heads"),
    ({"hidden_size": 64, "num_hidden_layers": 1, "layer_types": ["slstm"], "slstm_num_heads": 3}, "slstm_num_heads"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"embedding_dropout": 1.0}, "embedding_dropout"),
    ({"gate_soft_cap": -1.0}, "gate_soft_cap"),
    ({"block_family": "large", "logit_soft_cap": -30.0}, "logit_soft_cap"),
    ({"ffn_act": "swishy"}, "ffn_act"),
    ({"norm_type": "batchnorm"}, "norm_type"),
    ({"loss": "nll", "distribution_output": "negative_binomial", "scaling": "std"}, "negative_binomial"),
    ({"loss": "pinball"}, "loss"),
    ({"patch_length": 65, "context_length": 64}, "patch_length"),
    ({"quantiles": [0.9, 0.1]}, "quantiles"),
    ({"prediction_length": 0}, "prediction_length"),
    ({"scaling": "minmax"}, "scaling"),
    ({"encoder_layer_types": ["mlstm", "gru"]}, "encoder_layer_types"),
    ({"vocab_size": 100, "pad_token_id": 100}, "pad_token_id"),
    ({"vocab_size": 100, "bos_token_id": -1}, "bos_token_id"),
    ({"vocab_size": 100, "eos_token_id": [1, 100]}, "eos_token_id"),
    ({"vocab_size": None, "tie_word_embeddings": True}, "tie_word_embeddings"),
]


@pytest.mark.parametrize(("kwargs", "field"), INVALID_CONFIGS, ids=[str(kwargs) for kwargs, _ in INVALID_CONFIGS])
def test_invalid_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):  # "num_heads" must not match "slstm_num_heads"
        XLSTMConfig(**kwargs)
