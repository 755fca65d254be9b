"""TiRex (NX-AI's zero-shot forecaster) in xlstm_hf: the sLSTM's bfloat16 rounding, checkpoints in the real
format read from a file, a folder and an offline Hub cache, outputs against `tirex-ts` (the test-only oracle,
its PyTorch backend), the forecaster API, bad checkpoints, saving, fine-tuning (Trainer, bf16, LoRA) and the
conversion script.

The checkpoints are random-weight TiRex models written by tirex-ts's own classes in Lightning's format: small
ones (2 blocks of width 64, window 256, patches of 32, 9 quantiles) for most tests, one of the published size
(12 blocks of width 512, window 2048) for one check.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from torch.utils.data import Dataset
from transformers import AutoModelForTimeSeriesPrediction, Trainer, TrainingArguments

from xlstm_hf import XLSTMConfig, XLSTMForTimeSeriesPrediction
from xlstm_hf.checkpoint_integrity import CheckpointError
from xlstm_hf.ops import compiled, extension_status
from xlstm_hf.ops.slstm import slstm_recurrent
from xlstm_hf.tirex import config_from_tirex, read_tirex_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
PATCH, WINDOW, LEVELS = 32, 256, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
# assert_close tolerances against tirex-ts: the bf16-rounded recurrence computes what tirex-ts computes, up to
# the order of float32 sums (a rare bfloat16 rounding flip); float32 is held to the tolerance tirex-ts holds
# between its own backends (its tests/test_forecast.py)
BF16_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
FLOAT32_TOLERANCE = {"rtol": 1.6e-2, "atol": 1e-5}


def hyper_parameters(width: int = 64, blocks: int = 2, heads: int = 4, mlp: int = 128, window: int = WINDOW) -> dict:
    """TiRex's `hyper_parameters` (the published model: width 512, 12 blocks, mlp 2048, window 2048)."""
    block_kwargs = {"all_slstm": True, "embedding_dim": width, "num_blocks": blocks, "num_heads": heads,
                    "return_last_states": True, "vocab_size": 0}
    model_config = {"input_patch_size": PATCH, "output_patch_size": PATCH, "quantiles": LEVELS,
                    "block_kwargs": block_kwargs, "input_ff_dim": mlp}
    return {"model_config": model_config, "train_ctx_len": window}


def write_tirex_checkpoint(path: Path, seed: int = 0, prefix: str = "block_stack.", **sizes):
    """A random TiRex from tirex-ts's classes, saved as its model.ckpt is (the blocks and the out norm under
    `prefix`); returns the tirex-ts model, the oracle."""
    tirex = pytest.importorskip("tirex.models.tirex", reason="tirex-ts is the test oracle (pip install tirex-ts)")
    hp = hyper_parameters(**sizes)
    torch.manual_seed(seed)
    model = tirex.TiRexZero(backend="torch", **hp)
    with torch.no_grad():  # the cell and gate weights are left empty by tirex-ts; the norms are perturbed
        for name, parameter in model.named_parameters():
            if name.endswith(("norm_slstm.weight", "norm_ffn.weight", "out_norm.weight")):
                parameter.normal_(1.0, 0.1)
            elif "group_norm" in name:
                parameter.normal_(0.0, 0.1)
            elif "_recurrent_kernel_" in name:
                parameter.normal_(0.0, 0.1)
            elif "_bias_" in name:
                parameter.normal_(0.0, 0.5)
            elif name.endswith("gate.weight"):
                parameter.normal_(0.0, 0.25)
    state_dict = {(prefix + key if key.startswith(("blocks.", "out_norm.")) else key): value
                  for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": hp, "state_dict": state_dict}, path)
    return model.eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(checkpoint path, tirex-ts oracle) of a small random TiRex."""
    path = tmp_path_factory.mktemp("tirex") / "TiRex" / "model.ckpt"
    return path, write_tirex_checkpoint(path)


def contexts(batch: int, length: int, seed: int) -> torch.Tensor:
    """[batch, length] random walks around 100, with missing values: a gap in row 1, row 2 (where there is
    one) missing its first half."""
    generator = torch.Generator().manual_seed(seed)
    series = 100 + 5 * torch.randn(batch, length, generator=generator).cumsum(-1) / math.sqrt(length)
    series[1:2, length // 4 : length // 4 + 20] = float("nan")
    series[2:3, : length // 2] = float("nan")
    return series


# ---- the sLSTM's bfloat16 rounding ---------------------------------------------------------------------


def slstm_inputs(seed: int = 0, batch: int = 3, heads: int = 2, steps: int = 40, head_dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    gates_x = 2 * torch.randn(batch, heads, steps, 4, head_dim, generator=generator)
    kernel = 0.3 * torch.randn(heads, head_dim, 4, head_dim, generator=generator)
    bias = torch.randn(heads, 4, head_dim, generator=generator)
    bias[:, 1] += 14  # forget pre-activations beyond the clamp at 15
    return gates_x, kernel, bias


def test_rounded_reference_equals_the_tirex_ts_cell():
    cell = pytest.importorskip("tirex.models.slstm.cell", reason="tirex-ts is the test oracle").sLSTMCellTorch
    gates_x, kernel, bias = slstm_inputs()
    h, (h_last, c, n, m) = slstm_recurrent(gates_x, kernel, bias, bf16_rounding=True)
    batch, heads, steps, _, head_dim = gates_x.shape
    x = gates_x.permute(2, 0, 3, 1, 4).reshape(steps, batch, -1).bfloat16()  # [S, B, gates * heads * D]
    states = torch.zeros(4, batch, heads * head_dim, dtype=torch.bfloat16)
    outputs, final = cell.slstm_forward(x, states, kernel.flatten(2).bfloat16(), bias.transpose(0, 1).flatten())
    assert torch.equal(h, outputs.float().view(steps, batch, heads, head_dim).permute(1, 2, 0, 3))
    for ours, theirs in zip((h_last, c, n, m), final.float()):
        assert torch.equal(ours.flatten(1), theirs)


@pytest.mark.skipif(not extension_status()[0], reason="the compiled kernels do not build here")
def test_rounded_kernel_equals_the_rounded_reference_with_straight_through_gradients():
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 5:9] = False
    results = []
    for slstm in (slstm_recurrent, compiled.slstm):
        inputs = [x.clone().requires_grad_() for x in slstm_inputs(seed=1)]
        h, state = slstm(*inputs, mask=mask, bf16_rounding=True)
        (h.square().sum() + sum(s.sum() for s in state[1:3])).backward()
        results.append((h, state, [x.grad for x in inputs]))
    (h, state, grads), (h_ref, state_ref, grads_ref) = results[1], results[0]
    assert torch.equal(h, h_ref) and all(torch.equal(a, b) for a, b in zip(state, state_ref))
    assert torch.equal(h, h.bfloat16().float())  # the outputs and states are bfloat16 values
    for grad, grad_ref in zip(grads, grads_ref):
        assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


def test_rounding_is_off_by_default_and_changes_the_recurrence():
    gates_x, kernel, bias = slstm_inputs(seed=2)
    h, _ = slstm_recurrent(gates_x, kernel, bias)
    h_rounded, _ = slstm_recurrent(gates_x, kernel, bias, bf16_rounding=True)
    assert not torch.equal(h, h.bfloat16().float())
    assert 0 < (h - h_rounded).abs().max() < 0.05


# ---- checkpoints -------------------------------------------------------------------------------------


def test_conversion_gives_tirex_settings(small):
    path, _ = small
    config, weights = read_tirex_checkpoint(str(path))
    assert (config.forecaster, config.context_length, config.patch_length) == ("tirex", 256, 32)
    assert config.patch_stride == 32
    assert (config.hidden_size, config.num_hidden_layers, config.slstm_num_heads, config.ffn_size) == (64, 2, 4, 192)
    assert config.quantiles == LEVELS and config.patch_ffn_size == 128 and config.slstm_bf16_rounding
    assert (config.layer_types, config.slstm_conv_kernel_size, config.slstm_norm_eps) == (["slstm"] * 2, 0, 1e-5)
    checkpoint = torch.load(path, weights_only=True)["state_dict"]
    layer = "block_stack.blocks.1.slstm_layer."
    # gate order: TiRex's `fgate` feeds the input gate; the per-head norm's weight is stored as an offset from 1
    assert torch.equal(weights["backbone.blocks.1.mixer.igate.weight"], checkpoint[layer + "fgate.weight"])
    assert torch.equal(weights["backbone.blocks.1.mixer.norm.weight"], 1 + checkpoint[layer + "group_norm.weight"])
    kernel = checkpoint[layer + "slstm_cell._recurrent_kernel_"]  # [H, D, 4 D] -> ours [H, D, 4, D]
    assert torch.equal(weights["backbone.blocks.1.mixer.recurrent_kernel"][:, :, 2], kernel[:, :, 32:48])


@pytest.mark.parametrize("prefix", ["block_stack.", ""])
def test_loads_from_a_file_or_a_folder_with_or_without_the_block_stack_prefix(prefix, tmp_path):
    path = tmp_path / "model.ckpt"
    write_tirex_checkpoint(path, prefix=prefix)
    from_file = XLSTMForTimeSeriesPrediction.from_pretrained(path)
    from_folder = AutoModelForTimeSeriesPrediction.from_pretrained(tmp_path)
    assert type(from_folder) is XLSTMForTimeSeriesPrediction and not from_folder.training
    past = contexts(2, 300, seed=0)
    assert torch.equal(from_file.forecast(past).quantiles, from_folder.forecast(past).quantiles)


def test_loads_by_repo_id_from_an_offline_hub_cache(small, tmp_path):
    path, _ = small
    repo = tmp_path / "cache" / "models--NX-AI--TiRex"
    (repo / "snapshots" / ("b" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("b" * 40) / "model.ckpt").symlink_to(path)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    past = contexts(2, 300, seed=1)
    torch.save(past, tmp_path / "past.pt")
    torch.save(XLSTMForTimeSeriesPrediction.from_pretrained(path).forecast(past, 40).quantiles, tmp_path / "q.pt")
    script = (
        "import torch, xlstm_hf\n"
        "from transformers import AutoModelForTimeSeriesPrediction\n"
        f"past, expected = torch.load({str(tmp_path / 'past.pt')!r}), torch.load({str(tmp_path / 'q.pt')!r})\n"
        "for loader in (xlstm_hf.XLSTMForTimeSeriesPrediction, AutoModelForTimeSeriesPrediction):\n"
        "    model = loader.from_pretrained('NX-AI/TiRex')\n"
        "    assert torch.equal(model.forecast(past, 40).quantiles, expected), loader\n"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def bad_checkpoint(path: Path, change) -> Path:
    """The small checkpoint at `path`, changed by `change(checkpoint)`, saved beside it."""
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    bad = path.parent / "bad.ckpt"
    torch.save(checkpoint, bad)
    return bad


BAD_CHECKPOINTS = {
    "not a checkpoint": (lambda c: c.clear(), r"not a TiRex checkpoint: expected a dict with 'hyper_parameters'"),
    "no quantiles": (lambda c: c["hyper_parameters"]["model_config"].pop("quantiles"), r"\['quantiles'\] are missing"),
    "no heads": (lambda c: c["hyper_parameters"]["model_config"]["block_kwargs"].pop("num_heads"),
                 r"\['block_kwargs.num_heads'\] are missing"),
    "no window": (lambda c: c["hyper_parameters"].pop("train_ctx_len"), r"\['train_ctx_len'\] are missing"),
    "patch sizes": (lambda c: c["hyper_parameters"]["model_config"].update(output_patch_size=16),
                    r"input_patch_size=32 differs from output_patch_size=16"),
    "wrong shape": (lambda c: c["state_dict"].update({"block_stack.out_norm.weight": torch.ones(65)}),
                    r"wrong shapes \['out_norm.weight \[65\] \(expected \[64\]\)'\]"),
    "extra weight": (lambda c: c["state_dict"].update({"block_stack.blocks.2.norm_slstm.weight": torch.ones(64)}),
                     r"unexpected \['blocks.2.norm_slstm.weight'\]"),
    "misshapen kernel": (lambda c: c["state_dict"].update(
        {"block_stack.blocks.0.slstm_layer.slstm_cell._recurrent_kernel_": torch.zeros(4, 16, 60)}),
        r"wrong shapes \['blocks.0.slstm_layer.slstm_cell._recurrent_kernel_ \[4, 16, 60\] "
        r"\(expected \[4, 16, 64\]\)'\]"),
    "missing weight": (lambda c: c["state_dict"].pop("block_stack.blocks.1.ffn.proj_up.weight"),
                       r"missing \['blocks.1.ffn.proj_up.weight'\]"),
    "invalid sizes": (lambda c: c["hyper_parameters"]["model_config"]["block_kwargs"].update(num_heads=5),
                      r"make no valid model: slstm_num_heads=5 does not divide hidden_size=64"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_bad_checkpoints_raise_checkpoint_errors_naming_what_is_wrong(case, small):
    change, message = BAD_CHECKPOINTS[case]
    with pytest.raises(CheckpointError, match=message):
        XLSTMForTimeSeriesPrediction.from_pretrained(bad_checkpoint(small[0], change))


def test_a_file_that_is_no_checkpoint_and_unknown_keywords_are_refused(small, tmp_path):
    (tmp_path / "model.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"model.ckpt is not a readable PyTorch checkpoint"):
        XLSTMForTimeSeriesPrediction.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"\['hidden_sise'\] are neither config fields"):
        XLSTMForTimeSeriesPrediction.from_pretrained(small[0], hidden_sise=3)


def test_save_pretrained_writes_an_ordinary_folder_that_loads_without_conversion(small, tmp_path):
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0], prediction_length=64)
    model.save_pretrained(tmp_path / "converted")
    assert (tmp_path / "converted" / "config.json").is_file() and not (tmp_path / "converted" / "model.ckpt").exists()
    loaded = AutoModelForTimeSeriesPrediction.from_pretrained(tmp_path / "converted")
    assert loaded.config.forecaster == "tirex" and loaded.config.prediction_length == 64
    past = contexts(3, 200, seed=2)
    assert torch.equal(loaded.forecast(past).quantiles, model.forecast(past).quantiles)


def test_convert_script(small, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_tirex.py"), str(small[0]),
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    converted = XLSTMForTimeSeriesPrediction.from_pretrained(tmp_path / "out")
    direct = XLSTMForTimeSeriesPrediction.from_pretrained(small[0])
    past = contexts(3, 100, seed=3)
    assert torch.equal(converted.forecast(past, 33).quantiles, direct.forecast(past, 33).quantiles)


# ---- outputs against tirex-ts -----------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "horizon"), [(100, 32), (256, 1), (700, 96), (300, 75)])
@pytest.mark.parametrize("rounding", [True, False])
def test_forecasts_equal_those_of_tirex_ts(small, length, horizon, rounding):
    """Contexts shorter and longer than the window, with missing values; horizons of one patch, less, several."""
    path, oracle = small
    model = XLSTMForTimeSeriesPrediction.from_pretrained(path, slstm_bf16_rounding=rounding)
    context = contexts(4, length, seed=length)
    expected_quantiles, expected_median = oracle.forecast(context, prediction_length=horizon)
    forecast = model.forecast(context, horizon)
    tolerance = BF16_TOLERANCE if rounding else FLOAT32_TOLERANCE
    assert_close(forecast.quantiles, expected_quantiles, **tolerance)
    assert_close(forecast.median, expected_median.view(4, horizon), **tolerance)  # tirex-ts squeezes H = 1


def test_series_of_different_lengths_as_a_list(small):
    path, oracle = small
    model = XLSTMForTimeSeriesPrediction.from_pretrained(path)
    series = [contexts(1, length, seed=length)[0] for length in (40, 300, 129)]
    expected, _ = oracle.forecast(series, prediction_length=64)
    assert_close(model.forecast(series, 64).quantiles, expected, **BF16_TOLERANCE)
    assert_close(model.forecast([s.numpy() for s in series], 64).quantiles, expected, **BF16_TOLERANCE)


def test_the_published_size(tmp_path):
    """One check at the size of NX-AI/TiRex (35M parameters): a full window and one shorter, two patches."""
    oracle = write_tirex_checkpoint(tmp_path / "model.ckpt", width=512, blocks=12, mlp=2048, window=2048)
    context = torch.cat([contexts(2, 2048, seed=5), contexts(2, 2048, seed=6).masked_fill(
        torch.arange(2048) < 1500, float("nan"))])
    expected, _ = oracle.forecast(context, prediction_length=64)
    for rounding, tolerance in ((True, {"rtol": 2e-3, "atol": 1e-5}), (False, FLOAT32_TOLERANCE)):
        model = XLSTMForTimeSeriesPrediction.from_pretrained(tmp_path, slstm_bf16_rounding=rounding)
        assert model.num_parameters() == 35_291_200
        assert_close(model.forecast(context, 64).quantiles, expected, **tolerance)


# ---- the forecaster API ------------------------------------------------------------------------------------


def test_generate_gives_quantiles_and_samples_for_several_channels(small):
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0], num_input_channels=2, num_parallel_samples=7)
    past = torch.stack([contexts(3, 150, seed=7), contexts(3, 150, seed=8)], dim=-1)  # [3, 150, 2]
    observed = ~past.isnan()
    output = model.generate(past.nan_to_num(), observed, prediction_length=50)
    assert output.quantiles.shape == (3, 50, 2, 9) and output.sequences.shape == (3, 7, 50, 2)
    lowest, highest = output.quantiles.min(-1).values[:, None], output.quantiles.max(-1).values[:, None]
    assert (output.sequences >= lowest).all() and (output.sequences <= highest).all()
    univariate = XLSTMForTimeSeriesPrediction.from_pretrained(small[0])
    for channel in range(2):  # channels are forecast as independent series
        alone = univariate.forecast(past[..., channel], 50).quantiles
        assert_close(output.quantiles[:, :, channel], alone, rtol=1e-6, atol=1e-4)
    assert model.generate(past.nan_to_num(), observed, 20, num_samples=0).sequences is None


def test_forward_forecasts_prediction_length_as_generate_does(small):
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0], prediction_length=70)
    past = contexts(2, 90, seed=9).nan_to_num()[..., None]
    outputs = model(past)
    assert outputs.prediction_outputs.shape == (2, 70, 1, 9) and outputs.loc.shape == (6, 1, 1)
    assert_close(outputs.prediction_outputs, model.generate(past, prediction_length=70).quantiles, rtol=1e-6, atol=1e-4)


def test_leading_empty_patches_run_once_for_all_rows_with_the_same_forecasts(small):
    """Short contexts: generate runs the left padding (empty patches) once and continues every row from its
    state; forward runs every token of every window."""
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0], prediction_length=64)
    series = [contexts(1, length, seed=length)[0] for length in (40, 100, 129)]
    past = torch.stack([torch.cat([torch.full((129 - len(s),), float("nan")), s]) for s in series])[..., None]
    observed = ~past.isnan()
    expected = model(past.nan_to_num(), observed).prediction_outputs[:, :, 0]
    assert torch.equal(model.forecast(series, 64).quantiles, expected)


def test_inputs_of_other_dtypes_are_cast_and_bool_values_are_refused(small):
    """float64 (what torch.from_numpy gives), float16 and integer values work as float32 does."""
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0])
    past = contexts(2, 64, seed=10).nan_to_num().round()[..., None]
    future = past[:, :32] + 1
    expected = model(past, future_values=future)
    for dtype in (torch.float64, torch.float16, torch.int64):  # the values are integers: exact in each
        outputs = model(past.to(dtype), future_values=future.to(dtype))
        assert torch.equal(outputs.prediction_outputs, expected.prediction_outputs)
        assert torch.equal(outputs.loss, expected.loss)
    for name, arguments in (("past_values", {"past_values": past.bool()}),
                            ("future_values", {"past_values": past, "future_values": future.bool()})):
        with pytest.raises(TypeError, match=f"^{name} has dtype torch.bool"):
            model(**arguments)


@pytest.mark.parametrize("loss", ["mse", "nll", "quantile"])
def test_direct_forecasters_cast_float64_inputs(loss):
    config = XLSTMConfig(hidden_size=32, num_hidden_layers=2, num_heads=2, context_length=32, prediction_length=8,
                         patch_length=4, patch_stride=4, num_input_channels=2, loss=loss, chunk_size=8)
    torch.manual_seed(0)
    model = XLSTMForTimeSeriesPrediction(config).eval()
    past, future = torch.randn(2, 32, 2, dtype=torch.float64), torch.randn(2, 8, 2, dtype=torch.float64)
    outputs, expected = model(past, future_values=future), model(past.float(), future_values=future.float())
    assert torch.equal(outputs.loss, expected.loss)
    with pytest.raises(TypeError, match="^past_values has dtype torch.bool"):
        model(past > 0)


def test_config_refuses_what_the_tirex_forecaster_cannot_do():
    for overrides, message in (({"loss": "mse"}, "loss='quantile'"), ({"patch_stride": 16}, "patch_stride =="),
                               ({"context_length": 100}, "multiple of patch_length"),
                               ({"quantiles": [0.1, 0.9]}, "the level 0.5"), ({"scaling": "mean"}, "scaling='std'")):
        kwargs = {"forecaster": "tirex", "loss": "quantile", "patch_length": 32, "patch_stride": 32,
                  "context_length": 128, "quantiles": LEVELS, **overrides}
        with pytest.raises(ValueError, match=message):
            XLSTMConfig(**kwargs)
    with pytest.raises(ValueError, match="patch_ffn_size=8 applies to forecaster='tirex' only"):
        XLSTMConfig(patch_ffn_size=8)


# ---- fine-tuning -------------------------------------------------------------------------------------------


class SeriesWindows(Dataset):
    """Patch-aligned windows of a noisy sinusoid (period 24): 4 patches of context, 1 of horizon."""

    def __init__(self, count: int, seed: int, context: int = 4 * PATCH, horizon: int = PATCH):
        generator = torch.Generator().manual_seed(seed)
        steps = torch.arange(4000, dtype=torch.float32)
        series = 10 + 3 * torch.sin(2 * math.pi * steps / 24) + 0.3 * torch.randn(4000, generator=generator)
        starts = torch.randint(0, (4000 - context - horizon) // PATCH, (count,), generator=generator) * PATCH
        self.windows = torch.stack([series[s : s + context + horizon] for s in starts.tolist()])[..., None]
        self.context = context

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window = self.windows[index]
        return {"past_values": window[: self.context], "future_values": window[self.context :]}


def fine_tune(model, tmp_path, steps: int = 12, **arguments):
    args = TrainingArguments(**{
        "output_dir": str(tmp_path), "label_names": ["future_values"], "max_steps": steps,
        "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32, "learning_rate": 3e-3,
        "logging_steps": steps // 3, "save_strategy": "no", "report_to": "none", "use_cpu": True,
        "dataloader_num_workers": 0, **arguments,
    })
    trainer = Trainer(model=model, args=args, train_dataset=SeriesWindows(400, seed=0),
                      eval_dataset=SeriesWindows(64, seed=1))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    return before, trainer.evaluate()["eval_loss"]


def test_a_new_tirex_shaped_model_has_moderate_gradients_over_a_long_left_padding():
    """Its patch MLPs start with PyTorch's init of nn.Linear: with zero biases the empty patches would embed
    as 0, where every RMSNorm multiplies the gradient by 1/sqrt(eps)."""
    torch.manual_seed(0)
    model = XLSTMForTimeSeriesPrediction(config_from_tirex(hyper_parameters(blocks=3)))
    past, future = contexts(4, 40, seed=11).nan_to_num(100.0)[..., None], torch.full((4, 32, 1), 100.0)
    model(past, future_values=future).loss.backward()  # 7 empty patches of 8
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert 0 < norm < 1e4


def test_trainer_fine_tunes_a_loaded_tirex(small, tmp_path):
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0]).train()
    before, after = fine_tune(model, tmp_path)
    assert after < 0.5 * before


def test_trainer_fine_tunes_under_bf16_autocast(small, tmp_path):
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0]).train()
    before, after = fine_tune(model, tmp_path, steps=6, bf16=True)
    assert math.isfinite(after) and after < before
    assert next(model.parameters()).dtype == torch.float32


def test_lora_fine_tunes_the_patch_maps_and_feed_forwards(small, tmp_path):
    peft = pytest.importorskip("peft")
    model = XLSTMForTimeSeriesPrediction.from_pretrained(small[0])
    target = ["fc1", "fc2", "skip", "proj_up", "proj_down"]
    torch.manual_seed(0)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=target))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    before, after = fine_tune(model.train(), tmp_path, learning_rate=1e-2)
    assert after < 0.7 * before


# ---- the examples and the benchmark in their quick modes (in this process) -----------------------------------


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))


def test_finetune_example_quick_run(examples, tmp_path, capsys):
    finetune_tirex = pytest.importorskip("finetune_tirex", reason="the examples extra (pmdarima, datasets, matplotlib)")
    metrics = finetune_tirex.main(["--quick", "--output-dir", str(tmp_path)])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT training loss")
    assert metrics["validation_loss"]["after"] < metrics["validation_loss"]["before"]
    assert {"before_fine_tuning", "after_fine_tuning", "seasonal_naive"} <= metrics["test"].keys()
    assert (tmp_path / "finetune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "config.json").is_file()


def test_zero_shot_example_runs_a_tirex_it_finds_and_says_how_to_get_one_otherwise(examples, small, tmp_path, capsys):
    forecast_zero_shot = pytest.importorskip("forecast_zero_shot", reason="the examples extra")
    assert forecast_zero_shot.main(["--quick", "--checkpoint", "no-such-org/TiRex", "--output-dir",
                                    str(tmp_path / "none")]) is None
    assert "huggingface-cli download NX-AI/TiRex model.ckpt" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
    metrics = forecast_zero_shot.main(["--quick", "--checkpoint", str(small[0]), "--output-dir", str(tmp_path)])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT zero-shot day-ahead MASE")
    assert {"day_ahead", "week_ahead"} <= metrics.keys()
    assert (tmp_path / "zero_shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_quick_run(examples, capsys):
    bench_tirex = pytest.importorskip("bench_tirex")
    rows = bench_tirex.main(["--quick", "--threads", "1"])
    assert [row["batch"] for row in rows] == [1, 4]
    assert all(row["tirex-ts_max_relative_difference"] < 1e-5 for row in rows)
    assert "CPU:" in capsys.readouterr().out
