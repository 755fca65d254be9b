"""transformers' own common model and config tests (`ModelTesterMixin`, `ConfigTester`, from the source
distribution of the installed version; see tests/transformers_common) over every head that takes token ids,
in both block families, and the encoder-decoder. Skips name the premise a recurrent model lacks."""

import unittest

import pytest
import torch
from transformers_common import common_test_modules

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTokenClassification,
    XLSTMModel,
)

modeling_common, configuration_common = common_test_modules()
# the mixins decide by transformers' name tables which inputs and labels a class takes: ours join copies of them
for table, class_name in {
    "MODEL_MAPPING_NAMES": "XLSTMModel",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES": "XLSTMForCausalLM",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "XLSTMForSequenceClassification",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "XLSTMForTokenClassification",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": "XLSTMForSeq2SeqLM",
}.items():
    setattr(modeling_common, table, {**getattr(modeling_common, table), "xlstm_hf": class_name})
ModelTesterMixin, ids_tensor = modeling_common.ModelTesterMixin, modeling_common.ids_tensor
ConfigTester = configuration_common.ConfigTester

pytestmark = pytest.mark.usefixtures("single_thread")


class XLSTMModelTester:
    """Tiny configs and inputs in the form the mixins ask for."""

    def __init__(self, parent, block_family: str, batch_size=3, seq_length=7, is_encoder_decoder=False):
        self.parent = parent
        self.block_family = block_family
        self.batch_size, self.seq_length = batch_size, seq_length
        self.is_encoder_decoder = is_encoder_decoder
        self.vocab_size, self.hidden_size, self.num_hidden_layers, self.num_labels = 99, 32, 2, 3
        self.type_sequence_label_size = self.num_labels
        self.is_training = True

    def get_config(self) -> XLSTMConfig:
        return XLSTMConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_heads=2, layer_types=["mlstm", "slstm"], block_family=self.block_family, chunk_size=4,
            num_labels=self.num_labels, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
            is_encoder_decoder=self.is_encoder_decoder,
        )

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 3) + 3  # no pad ids
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if self.is_encoder_decoder:
            decoder_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 3) + 3
            inputs.update(decoder_input_ids=decoder_ids, decoder_attention_mask=torch.ones_like(decoder_ids))
        return self.get_config(), inputs


class CommonTests(ModelTesterMixin):
    """What every test class here shares: the reasons for the skips."""

    has_attentions = False  # a recurrent model: no attention weights to return
    test_can_init_all_missing_weights_before_2023 = True  # the test reads the year of a copyright line
    block_family = "neurips"

    def setUp(self):
        self.model_tester = XLSTMModelTester(self, self.block_family, is_encoder_decoder=self.is_encoder_decoder)
        self.config_tester = ConfigTester(self, config_class=XLSTMConfig, hidden_size=37,
                                          common_properties=["hidden_size", "num_hidden_layers"])

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip("transformers' source distribution does not ship tests/generation/: the generation behaviours of "
                   "its GenerationTesterMixin are tested in tests/test_generation.py")
    def test_generation_tester_mixin_inheritance(self):
        pass


class NeuripsBlocksTest(CommonTests, unittest.TestCase):
    all_model_classes = (XLSTMModel, XLSTMForCausalLM, XLSTMForSequenceClassification, XLSTMForTokenClassification)


class LargeBlocksTest(CommonTests, unittest.TestCase):
    all_model_classes = (XLSTMModel, XLSTMForCausalLM, XLSTMForSequenceClassification, XLSTMForTokenClassification)
    block_family = "large"


class EncoderDecoderTest(CommonTests, unittest.TestCase):
    all_model_classes = (XLSTMForSeq2SeqLM,)
    is_encoder_decoder = True
