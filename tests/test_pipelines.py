"""transformers pipelines with our models and a word-level tokenizer: each result against the model called
directly (generate, softmax of the logits, arg-max per token)."""

import pytest
import torch
from tokenizers import Tokenizer, decoders
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast, pipeline

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTokenClassification,
)

WORDS = ["<pad>", "<s>", "</s>", "<unk>", *"the cat sat on a mat dog ran far away le chat est assis".split()]
TEXTS = ["the cat sat on a mat", "a dog ran far away"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    words = Tokenizer(WordLevel({word: index for index, word in enumerate(WORDS)}, unk_token="<unk>"))
    words.pre_tokenizer = Whitespace()
    words.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def make(model_class, **overrides):
    config = XLSTMConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_heads=2, chunk_size=4,
                         layer_types=["mlstm", "slstm"], pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         decoder_start_token_id=1, **overrides)
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # away from the initial weights, so that outputs depend on the input
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_text_generation(tokenizer):
    model = make(XLSTMForCausalLM)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    result = generator(TEXTS[0], max_new_tokens=5, do_sample=False, return_full_text=False)
    ids = tokenizer(TEXTS[0], return_tensors="pt")
    expected = model.generate(**ids, max_new_tokens=5, do_sample=False)[0, ids["input_ids"].shape[1] :]
    assert result[0]["generated_text"] == tokenizer.decode(expected, skip_special_tokens=True)


def test_text_classification(tokenizer):
    model = make(XLSTMForSequenceClassification, num_labels=3)
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
    results = classifier(TEXTS)
    for text, result in zip(TEXTS, results):
        with torch.no_grad():
            probabilities = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0]
        assert result["label"] == f"LABEL_{int(probabilities.argmax())}"
        assert result["score"] == pytest.approx(float(probabilities.max()), rel=1e-5)


def test_token_classification(tokenizer):
    model = make(XLSTMForTokenClassification, num_labels=3, bidirectional=True)
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, ignore_labels=[])
    entities = tagger(TEXTS[1])
    with torch.no_grad():
        predicted = model(**tokenizer(TEXTS[1], return_tensors="pt")).logits.argmax(-1)[0]
    assert [entity["word"] for entity in entities] == TEXTS[1].split()
    assert [entity["entity"] for entity in entities] == [f"LABEL_{int(label)}" for label in predicted]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_seq2seq_generation(tokenizer, num_beams):
    model = make(XLSTMForSeq2SeqLM)
    translator = pipeline("seq2seq-generation", model=model, tokenizer=tokenizer)
    results = translator(TEXTS, max_new_tokens=6, num_beams=num_beams)
    for text, result in zip(TEXTS, results):
        expected = model.generate(**tokenizer(text, return_tensors="pt"), max_new_tokens=6, num_beams=num_beams)
        assert result == [{"generated_text": tokenizer.decode(expected[0], skip_special_tokens=True)}]
