"""Graph-safe models: torch.export of every head, with and without padding, and for any length and batch size up
to a bound; torch.compile(fullgraph=True) of a forward and of one decoding step. What a GPU needs to run them as
CUDA graphs, checked on the CPU."""

import pytest
import torch
from tiny_models import noisy, random_ids, tiny_config
from torch.export import Dim, export

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMForTokenClassification,
    XLSTMModel,
    graph_safe,
)

pytestmark = pytest.mark.usefixtures("single_thread")
FAMILIES = ["neurips-mixed", "large-mixed"]
TOKEN_HEADS = [XLSTMModel, XLSTMForCausalLM, XLSTMForSequenceClassification, XLSTMForTokenClassification]


def first_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else next(iter(output.values()))


def padded_batch(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, : length // 3] = 0  # left padding
    return random_ids(batch, length, seed=seed), mask


def token_model(head, family: str):
    torch.manual_seed(0)
    return noisy(head(tiny_config(family, num_labels=3, use_cache=False)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", TOKEN_HEADS, ids=lambda head: head.__name__)
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_export_of_every_token_head_gives_the_eager_outputs(head, family, padded):
    model = token_model(head, family)
    ids, mask = padded_batch(2, 11)
    inputs = {"attention_mask": mask} if padded else {}
    program = export(model, (ids,), inputs)
    torch.testing.assert_close(first_output(program.module()(ids, **inputs)), first_output(model(ids, **inputs)),
                               rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_exported_program_serves_every_length_and_batch_size_up_to_its_bound(family):
    model = token_model(XLSTMForCausalLM, family)
    batch, length = Dim("batch", min=1, max=8), Dim("length", min=2, max=256)
    ids, mask = padded_batch(2, 11)
    program = export(model, (ids,), {"attention_mask": mask},
                     dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}})
    for rows, steps in [(1, 2), (3, 9), (2, 64), (5, 131)]:  # chunks of 8: one, two, whole and partial ones
        ids, mask = padded_batch(rows, steps, seed=steps)
        torch.testing.assert_close(program.module()(ids, attention_mask=mask).logits,
                                   model(ids, attention_mask=mask).logits, rtol=1e-6, atol=1e-6)


def test_export_of_the_encoder_decoder():
    torch.manual_seed(0)
    model = noisy(XLSTMForSeq2SeqLM(tiny_config(decoder_start_token_id=1, use_cache=False)))
    source, mask = padded_batch(2, 9)
    target = random_ids(2, 5, seed=1)
    program = export(model, (source, mask, target))
    torch.testing.assert_close(program.module()(source, mask, target).logits, model(source, mask, target).logits,
                               rtol=0, atol=0)


def forecaster_and_inputs() -> tuple[XLSTMForTimeSeriesPrediction, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    config = XLSTMConfig(hidden_size=32, num_hidden_layers=2, num_heads=2, layer_types=["mlstm", "slstm"],
                         chunk_size=4, num_input_channels=2, context_length=32, prediction_length=8, patch_length=4,
                         patch_stride=4)
    values, observed = torch.randn(3, 32, 2), torch.ones(3, 32, 2)
    observed[0, :5] = 0
    return noisy(XLSTMForTimeSeriesPrediction(config)), (values, observed)


def test_export_of_the_forecaster():
    model, (values, observed) = forecaster_and_inputs()
    program = export(model, (values, observed))
    torch.testing.assert_close(program.module()(values, observed).prediction_outputs,
                               model(values, observed).prediction_outputs, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_forward_and_decoding_step_run_as_one_graph(family):
    torch.manual_seed(0)
    model = noisy(XLSTMForCausalLM(tiny_config(family)))
    ids, mask = padded_batch(2, 11)
    forward = torch.compile(model, fullgraph=True, backend="eager")
    prefill = forward(ids, attention_mask=mask)
    torch.testing.assert_close(prefill.logits, model(ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-5)
    token = prefill.logits[:, -1:].argmax(-1)
    grown = torch.cat([mask, torch.ones_like(token)], dim=1)
    eager_cache = model(ids, attention_mask=mask).cache
    step = forward(token, attention_mask=grown, cache=prefill.cache)
    torch.testing.assert_close(step.logits, model(token, attention_mask=grown, cache=eager_cache).logits,
                               rtol=1e-5, atol=1e-5)


def test_graph_safe_runs_read_no_tensor_values_on_the_host(monkeypatch):
    """Inside graph_safe() (a CUDA graph capture), no check or shortcut syncs with the host: Tensor.item, bool
    and tolist are never called."""
    model = token_model(XLSTMForCausalLM, "neurips-mixed")
    ids, mask = padded_batch(2, 11)
    for name in ("item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, lambda *args, name=name: pytest.fail(f"Tensor.{name} called"))
    with graph_safe():
        model(ids, attention_mask=mask)


class Logits(torch.nn.Module):
    """A head's first output from plain tensors, as ONNX takes them."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return first_output(self.model(*inputs))


def onnx_round_trip(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], tmp_path) -> None:
    """Export `model` to ONNX (torch.onnx.export with dynamo), run it in onnxruntime, compare with eager."""
    onnxruntime = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    torch.onnx.export(Logits(model), inputs, path, dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(path)
    names = [value.name for value in session.get_inputs()]
    (outputs,) = session.run(None, dict(zip(names, (x.numpy() for x in inputs))))
    torch.testing.assert_close(torch.from_numpy(outputs), Logits(model)(*inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", [XLSTMForCausalLM, XLSTMForSequenceClassification], ids=lambda head: head.__name__)
def test_onnx_export_runs_in_onnxruntime_with_the_eager_outputs(head, tmp_path):
    onnx_round_trip(token_model(head, "neurips-mixed"), padded_batch(2, 11), tmp_path)


def test_onnx_export_of_the_forecaster_runs_in_onnxruntime(tmp_path):
    model, inputs = forecaster_and_inputs()
    onnx_round_trip(model, inputs, tmp_path)


def test_a_compiled_model_still_refuses_token_ids_outside_the_vocabulary():
    """Traced, the range check of the token ids runs on the device (no host read): an id outside the
    vocabulary is a clear error, not an index out of bounds deep in the compiled kernels."""
    model = torch.compile(token_model(XLSTMForCausalLM, "neurips-mixed"), fullgraph=True, backend="inductor")
    ids, mask = padded_batch(2, 11)
    model(ids, attention_mask=mask)
    with pytest.raises(RuntimeError, match=r"input_ids holds a token id outside \[0, 64\)"):
        model(ids.masked_fill(ids == ids[0, 5], 64), attention_mask=mask)
