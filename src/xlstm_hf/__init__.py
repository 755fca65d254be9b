"""xLSTM (mLSTM and sLSTM blocks, and the xLSTM-7B block) as a transformers model family.

Importing the package registers `XLSTMConfig` (model type "xlstm_hf") and the models with the Auto
classes; it compiles nothing, prints nothing and needs no GPU.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_xlstm import XLSTMConfig
from .conversion import convert_official_xlstm
from .modeling_xlstm import (
    XLSTMCache,
    XLSTMCausalLMOutput,
    XLSTMForCausalLM,
    XLSTMModel,
    XLSTMModelOutput,
    XLSTMPreTrainedModel,
)

AutoConfig.register(XLSTMConfig.model_type, XLSTMConfig)
AutoModel.register(XLSTMConfig, XLSTMModel)
AutoModelForCausalLM.register(XLSTMConfig, XLSTMForCausalLM)

__version__ = "0.1.0"

__all__ = [
    "XLSTMCache",
    "XLSTMCausalLMOutput",
    "XLSTMConfig",
    "XLSTMForCausalLM",
    "XLSTMModel",
    "XLSTMModelOutput",
    "XLSTMPreTrainedModel",
    "convert_official_xlstm",
]
