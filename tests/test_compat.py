"""Each change of src/xlstm_hf/_compat.py rests on a behaviour of transformers or huggingface_hub: these tests hold
that it still behaves so, on the original, unpatched code. One that fails says its change can go."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from transformers import AutoModelForTimeSeriesPrediction, PreTrainedConfig, configuration_utils

from xlstm_hf import XLSTMConfig
from xlstm_hf.configuration_xlstm import LAYER_TYPES


def test_transformers_still_checks_layer_types_of_a_config_read_without_its_class(monkeypatch):
    """allow_layer_types: without it, a base config with our layer types is refused."""
    monkeypatch.setattr(configuration_utils, "ALLOWED_ATTN_LAYER_TYPES", tuple(
        name for name in configuration_utils.ALLOWED_ATTN_LAYER_TYPES if name not in LAYER_TYPES))
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match="layer_types"):
        PreTrainedConfig(layer_types=["mlstm", "slstm"], num_hidden_layers=2)


def test_strict_dataclasses_still_report_wrong_types_as_no_type_error():
    """raise_type_errors_for_fields: huggingface_hub's error is not a TypeError; ours is, naming the field."""
    assert not issubclass(StrictDataclassFieldValidationError, TypeError)
    with pytest.raises(TypeError, match="hidden_size='wide' does not have the field's type int"):
        XLSTMConfig(hidden_size="wide")


def test_the_auto_class_still_needs_a_config_json(tmp_path):
    """route_tirex_checkpoints: transformers' own from_pretrained cannot read a folder with a TiRex checkpoint
    only (no config.json)."""
    torch.save({"hyper_parameters": {}, "state_dict": {}}, tmp_path / "model.ckpt")
    regular = AutoModelForTimeSeriesPrediction.from_pretrained.__func__.regular
    with pytest.raises((OSError, ValueError)):
        regular(AutoModelForTimeSeriesPrediction, tmp_path)
