"""A pipeline for sequence-to-sequence generation (translation, summarisation). transformers 5 removed
"text2text-generation", "translation" and "summarization" and refuses those names, so importing xlstm_hf
registers this one as "seq2seq-generation", for any `AutoModelForSeq2SeqLM`:

    generator = pipeline("seq2seq-generation", model=model, tokenizer=tokenizer)
    generator(["a source sentence", "another"], max_new_tokens=40, num_beams=4)
    # -> [[{"generated_text": ...}], [{"generated_text": ...}]], a list per source (num_return_sequences)
"""

from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "seq2seq-generation"


class Seq2SeqGenerationPipeline(Pipeline):
    """Source text in, generated target text out; keyword arguments go to `generate` (or the tokenizer's
    `truncation` / `max_length` to the source)."""

    _load_tokenizer = True

    def _sanitize_parameters(self, truncation=None, max_length=None, skip_special_tokens=True, **generate_kwargs):
        preprocess = {key: value for key, value in {"truncation": truncation, "max_length": max_length}.items()
                      if value is not None}
        return preprocess, generate_kwargs, {"skip_special_tokens": skip_special_tokens}

    def preprocess(self, text: str, **tokenizer_kwargs):
        return self.tokenizer(text, return_tensors="pt", **tokenizer_kwargs)

    def _forward(self, model_inputs, **generate_kwargs):
        return {"output_ids": self.model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs, skip_special_tokens=True):
        return [
            {"generated_text": self.tokenizer.decode(output_ids, skip_special_tokens=skip_special_tokens)}
            for output_ids in model_outputs["output_ids"]
        ]


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=Seq2SeqGenerationPipeline, pt_model=AutoModelForSeq2SeqLM)
