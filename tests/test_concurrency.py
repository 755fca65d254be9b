"""One model used from several threads at once (a server answering requests) computes exactly what it computes
used from one: forward, forward continued from a cache, greedy and beam generation, forecasting, while other
threads build models (which changes the global count the compiled one-token step keys its parameters on)."""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import xlstm_hf.decoding as decoding
from xlstm_hf import XLSTMConfig, XLSTMForCausalLM, XLSTMForTimeSeriesPrediction
from xlstm_hf.decoding import ModuleTreeVersion
from xlstm_hf.ops import choose_backend

pytestmark = pytest.mark.usefixtures("single_thread")

THREADS, REPEATS, TASKS = 4, 3, 6
VOCAB = 50
LANGUAGE_MODELS = {
    "neurips": {"block_family": "neurips", "layer_types": ["mlstm", "slstm"]},
    "large": {"block_family": "large", "layer_types": ["mlstm", "mlstm"]},
}
TIME_SERIES = {"context_length": 16, "prediction_length": 4, "patch_length": 4, "patch_stride": 4,
               "num_input_channels": 2, "loss": "mse"}


def tiny_config(**overrides) -> XLSTMConfig:
    sizes = {"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_heads": 2, "chunk_size": 4}
    return XLSTMConfig(**{**sizes, "pad_token_id": 0, **overrides})


def run_in_threads(work, tasks: list) -> list:
    """`work(task)` for every task REPEATS times over, from THREADS threads; -> the results, task by task."""
    def in_worker(task):
        torch.set_num_threads(1)  # as the sequential run (the fixture); a thread starts with torch's defaults
        with torch.no_grad():  # grad mode is per thread
            return work(task)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(in_worker, task) for _ in range(REPEATS) for task in tasks]
        results = [future.result() for future in futures]
    return [results[i :: len(tasks)] for i in range(len(tasks))]


def assert_equal(got, expected, where: str) -> None:
    assert len(got) == len(expected), where
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape and torch.equal(a, b), f"{where}, output {index}"


def build_a_model(_task) -> list:
    """What another thread of a server may do meanwhile: build a model (every module registered moves the
    global ModuleTreeVersion)."""
    XLSTMForCausalLM(tiny_config(layer_types=["mlstm", "slstm"]))
    return []


def language_model_tasks() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of 2 rows, each of its own length, the second row left-padded."""
    generator = torch.Generator().manual_seed(0)
    tasks = []
    for index in range(TASKS):
        ids = torch.randint(1, VOCAB, (2, 5 + index), generator=generator)
        mask = torch.ones_like(ids)
        mask[1, : index % 3] = 0
        tasks.append((ids.masked_fill(mask == 0, 0), mask))
    return tasks


@pytest.mark.parametrize("family", list(LANGUAGE_MODELS))
def test_language_model_from_threads_matches_sequential_use(family):
    torch.manual_seed(0)
    model = XLSTMForCausalLM(tiny_config(**LANGUAGE_MODELS[family])).eval()

    def work(task) -> list[torch.Tensor]:
        if task is None:
            return build_a_model(task)
        ids, mask = task
        split = ids.shape[1] // 2
        whole = model(ids, attention_mask=mask).logits
        first = model(ids[:, :split], attention_mask=mask[:, :split], use_cache=True)
        rest = model(ids[:, split:], attention_mask=mask, cache=first.cache).logits  # continued from the cache
        greedy = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        beams = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, num_beams=2)
        return [whole, first.logits, rest, greedy, beams]

    tasks = [*language_model_tasks(), None]
    with torch.no_grad():
        expected = [work(task) for task in tasks]
    if choose_backend("decode_step", torch.device("cpu"))[0] == "cpp":
        assert model.backbone._decode_collected is not None  # the compiled one-token step ran
    for index, results in enumerate(run_in_threads(work, tasks)):
        for repeat, got in enumerate(results):
            assert_equal(got, expected[index], f"task {index}, repeat {repeat}")


def test_forecaster_from_threads_matches_sequential_use():
    torch.manual_seed(0)
    model = XLSTMForTimeSeriesPrediction(tiny_config(**TIME_SERIES)).eval()
    generator = torch.Generator().manual_seed(1)
    tasks = [torch.randn(2, 12 + 4 * index, 2, generator=generator) for index in range(TASKS)] + [None]

    def work(past_values) -> list[torch.Tensor]:
        if past_values is None:
            return build_a_model(past_values)
        forecast = model(past_values).prediction_outputs
        rolled = model.generate(past_values, prediction_length=12).sequences  # beyond prediction_length: a cache
        return [forecast, rolled]

    with torch.no_grad():
        expected = [work(task) for task in tasks]
    for index, results in enumerate(run_in_threads(work, tasks)):
        for repeat, got in enumerate(results):
            assert_equal(got, expected[index], f"task {index}, repeat {repeat}")


def test_module_tree_version_counts_every_change_from_threads():
    """A change counted twice as one could bring the count back to a value the one-token step already saw."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        start, bumps = ModuleTreeVersion.value, 20_000
        threads = [threading.Thread(target=lambda: [ModuleTreeVersion.bump() for _ in range(bumps)])
                   for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert ModuleTreeVersion.value - start == THREADS * bumps


def test_a_change_while_the_step_parameters_are_collected_is_not_missed(monkeypatch):
    """Another thread may register a module while the one-token step collects its parameters: those are
    then stamped with the count from before the change, and collected again on the next call."""
    model = XLSTMForCausalLM(tiny_config(layer_types=["mlstm", "slstm"])).eval()
    plain_submodules = decoding.plain_submodules

    def collect_while_something_changes(modules, plain_types):
        found = plain_submodules(modules, plain_types)
        ModuleTreeVersion.bump()  # a module registered meanwhile, in another thread
        return found

    monkeypatch.setattr(decoding, "plain_submodules", collect_while_something_changes)
    decoding.ModuleTreeVersion.watch()
    before = ModuleTreeVersion.value
    model.backbone.decode_parameters()
    assert model.backbone._decode_collected[0] == before != ModuleTreeVersion.value  # so collected again next time
