"""xLSTM (mLSTM and sLSTM blocks, and the xLSTM-7B block) as a transformers model family.

Importing the package registers `XLSTMConfig` (model type "xlstm_hf") and the models with the Auto
classes, and the "seq2seq-generation" pipeline; it compiles nothing, prints nothing and needs no GPU.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTimeSeriesPrediction,
    AutoModelForTokenClassification,
)

from .configuration_xlstm import XLSTMConfig
from .conversion import convert_official_xlstm
from .input_checks import graph_safe
from .modeling_xlstm import (
    XLSTMCache,
    XLSTMCausalLMOutput,
    XLSTMForCausalLM,
    XLSTMForSequenceClassification,
    XLSTMForTokenClassification,
    XLSTMModel,
    XLSTMModelOutput,
    XLSTMPreTrainedModel,
)
from .modeling_xlstm_seq2seq import XLSTMForSeq2SeqLM
from .modeling_xlstm_time_series import (
    XLSTMForecastOutput,
    XLSTMForTimeSeriesPrediction,
    XLSTMForTimeSeriesPredictionOutput,
    XLSTMTimeSeriesSampleOutput,
)
from .pipelines import Seq2SeqGenerationPipeline

AutoConfig.register(XLSTMConfig.model_type, XLSTMConfig)
AutoModel.register(XLSTMConfig, XLSTMModel)
AutoModelForCausalLM.register(XLSTMConfig, XLSTMForCausalLM)
AutoModelForSequenceClassification.register(XLSTMConfig, XLSTMForSequenceClassification)
AutoModelForTokenClassification.register(XLSTMConfig, XLSTMForTokenClassification)
AutoModelForSeq2SeqLM.register(XLSTMConfig, XLSTMForSeq2SeqLM)
AutoModelForTimeSeriesPrediction.register(XLSTMConfig, XLSTMForTimeSeriesPrediction)

__version__ = "0.1.0"

__all__ = [
    "Seq2SeqGenerationPipeline",
    "XLSTMCache",
    "XLSTMCausalLMOutput",
    "XLSTMConfig",
    "XLSTMForecastOutput",
    "XLSTMForCausalLM",
    "XLSTMForSeq2SeqLM",
    "XLSTMForSequenceClassification",
    "XLSTMForTimeSeriesPrediction",
    "XLSTMForTimeSeriesPredictionOutput",
    "XLSTMForTokenClassification",
    "XLSTMModel",
    "XLSTMModelOutput",
    "XLSTMPreTrainedModel",
    "XLSTMTimeSeriesSampleOutput",
    "convert_official_xlstm",
    "graph_safe",
]
