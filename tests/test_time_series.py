"""XLSTMForTimeSeriesPrediction: shapes, learning, missing values, rolling generation, errors, saving, Trainer.

Tiny models (hidden 32, two blocks) on contexts of 32 steps cut into patches of 4; the learning tests use
a sum of two sinusoids per channel with random amplitudes and phases plus a little noise.
"""

import math

import pytest
import torch
from torch.testing import assert_close
from torch.utils.data import Dataset
from transformers import AutoModelForTimeSeriesPrediction, Trainer, TrainingArguments

from xlstm_hf import XLSTMConfig
from xlstm_hf.modeling_xlstm_time_series import XLSTMForTimeSeriesPrediction, sample_from_quantiles

CONTEXT, HORIZON, CHANNELS = 32, 8, 3
LOSSES = ("mse", "nll", "quantile")



pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_config(**overrides) -> XLSTMConfig:
    kwargs = {
        "hidden_size": 32, "num_hidden_layers": 2, "num_heads": 2, "chunk_size": 8, "context_length": CONTEXT,
        "prediction_length": HORIZON, "patch_length": 4, "patch_stride": 4, "num_input_channels": CHANNELS,
        "num_parallel_samples": 5, **overrides,
    }
    return XLSTMConfig(**kwargs)


def make_model(**overrides) -> XLSTMForTimeSeriesPrediction:
    torch.manual_seed(0)
    return XLSTMForTimeSeriesPrediction(tiny_config(**overrides)).eval()


def sinusoids(num_series: int, length: int, seed: int, channels: int = CHANNELS) -> torch.Tensor:
    """[num_series, length, channels]: two sinusoids (periods 9 and 17) with random amplitudes and phases per
    series and channel, an offset of 3 and noise of std 0.05."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)[None, :, None]
    amplitude = 0.5 + torch.rand(2, num_series, 1, channels, generator=generator)
    phase = 2 * math.pi * torch.rand(2, num_series, 1, channels, generator=generator)
    waves = [amplitude[i] * torch.sin(2 * math.pi * t / period + phase[i]) for i, period in enumerate((9, 17))]
    return 3 + waves[0] + waves[1] + 0.05 * torch.randn(num_series, length, channels, generator=generator)


def random_windows(series: torch.Tensor, num_windows: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(past [N, CONTEXT, C], future [N, HORIZON, C]) cut at random times from random series."""
    rows = torch.randint(0, series.shape[0], (num_windows,), generator=generator)
    starts = torch.randint(0, series.shape[1] - CONTEXT - HORIZON + 1, (num_windows,), generator=generator)
    windows = torch.stack([series[r, s : s + CONTEXT + HORIZON] for r, s in zip(rows.tolist(), starts.tolist())])
    return windows[:, :CONTEXT], windows[:, CONTEXT:]


def point_forecast(model: XLSTMForTimeSeriesPrediction, past_values: torch.Tensor) -> torch.Tensor:
    """[B, H, C]: the point forecast, the distribution mean or the median quantile."""
    outputs = model(past_values)
    if model.config.loss == "nll":
        return model.forecast_distribution(outputs.prediction_outputs, outputs.loc, outputs.scale).mean
    if model.config.loss == "quantile":
        return outputs.prediction_outputs[..., model.config.quantiles.index(0.5)]
    return outputs.prediction_outputs


# ---- shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("channels", [1, CHANNELS])
@pytest.mark.parametrize("length", [CONTEXT, 16, 23])  # 23 leaves a remainder before the first patch
def test_output_shapes(loss, channels, length):
    model = make_model(loss=loss, num_input_channels=channels)
    past, future = torch.randn(2, length, channels), torch.randn(2, HORIZON, channels)
    outputs = model(past, future_values=future, output_hidden_states=True)

    forecast_shape = (2, HORIZON, channels)
    if loss == "nll":
        assert [p.shape for p in outputs.prediction_outputs] == [forecast_shape] * 3  # Student-t df, loc, scale
    elif loss == "quantile":
        assert outputs.prediction_outputs.shape == (*forecast_shape, 3)
    else:
        assert outputs.prediction_outputs.shape == forecast_shape
    assert outputs.loc.shape == outputs.scale.shape == (2, 1, channels)
    assert outputs.loss.shape == () and torch.isfinite(outputs.loss)
    num_patches = (length - 4) // 4 + 1
    assert len(outputs.hidden_states) == 3 and outputs.hidden_states[-1].shape == (2 * channels, num_patches, 32)
    as_tuple = model(past, future_values=future, return_dict=False)
    assert_close(as_tuple[0], outputs.loss)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("stride", [4, 2])  # 2: overlapping patches
def test_generate_shapes(loss, stride):
    model = make_model(loss=loss, patch_stride=stride)
    past = sinusoids(2, 27, seed=0)
    num_samples = 1 if loss == "mse" else model.config.num_parallel_samples
    for horizon in (None, 3, int(2.5 * HORIZON)):
        sequences = model.generate(past, prediction_length=horizon).sequences
        assert sequences.shape == (2, num_samples, horizon or HORIZON, CHANNELS)
        assert torch.isfinite(sequences).all()


def test_sample_from_quantiles_interpolates_within_the_outer_quantiles():
    torch.manual_seed(0)
    quantiles = torch.tensor([2.0, 0.0, 1.0]).expand(1, 1, 1, 3)  # unsorted on purpose
    samples = sample_from_quantiles(quantiles, torch.tensor([0.1, 0.5, 0.9]), 20_000)
    assert samples.shape == (1, 20_000, 1, 1)
    assert samples.min() == 0.0 and samples.max() == 2.0  # clamped to the outer quantiles, reached with mass 0.1
    assert abs((samples < 1).float().mean().item() - 0.5) < 0.02
    assert abs(((samples > 0) & (samples < 0.5)).float().mean().item() - 0.2) < 0.02  # linear between quantiles


# ---- learning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_learns_sinusoids_better_than_the_naive_forecast(loss):
    model = make_model(loss=loss).train()
    train_series, heldout_series = sinusoids(64, 160, seed=1), sinusoids(32, 160, seed=2)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        past, future = random_windows(train_series, 64, generator)
        loss_value = model(past, future_values=future).loss
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
        losses.append(loss_value.item())
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]

    past, future = random_windows(heldout_series, 64, generator)
    with torch.no_grad():
        model_mae = (point_forecast(model.eval(), past) - future).abs().mean()
    naive_mae = (past[:, -1:] - future).abs().mean()
    assert model_mae < 0.5 * naive_mae


# ---- missing values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_missing_values_are_ignored(loss):
    model = make_model(loss=loss)
    past, future = sinusoids(2, CONTEXT + HORIZON, seed=3).split([CONTEXT, HORIZON], dim=1)
    past_observed = torch.rand(past.shape, generator=torch.Generator().manual_seed(0)) > 0.3
    future_observed = torch.ones_like(future, dtype=torch.bool)
    future_observed[0, 2:5, 1] = False
    nan_past = past.masked_fill(~past_observed, float("nan"))
    nan_future = future.masked_fill(~future_observed, float("nan"))

    outputs = model(nan_past, past_observed, future_values=nan_future, future_observed_mask=future_observed)
    other = model(past.masked_fill(~past_observed, 100.0), past_observed, future_values=future,
                  future_observed_mask=future_observed)

    assert torch.isfinite(outputs.loss)
    assert_close(outputs.loss, other.loss, rtol=0, atol=0)
    assert_close(outputs.prediction_outputs, other.prediction_outputs, rtol=0, atol=0)
    with torch.no_grad():
        samples = model.generate(nan_past, past_observed, prediction_length=2 * HORIZON).sequences
    assert torch.isfinite(samples).all()


def test_missing_future_values_give_finite_gradients():
    model = make_model(loss="nll").train()
    past, future = sinusoids(2, CONTEXT + HORIZON, seed=4).split([CONTEXT, HORIZON], dim=1)
    future_observed = torch.rand(future.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    model(past, future_values=future.masked_fill(~future_observed, float("nan")),
          future_observed_mask=future_observed).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("scaling", ["std", "mean"])
def test_scaler_uses_only_observed_values(scaling):
    model = make_model(scaling=scaling)
    past = sinusoids(2, CONTEXT, seed=5)
    observed = torch.rand(past.shape, generator=torch.Generator().manual_seed(2)) > 0.4
    outputs = model(past.masked_fill(~observed, float("nan")), observed)

    count = observed.sum(1, keepdim=True)
    zeroed = past.masked_fill(~observed, 0.0)
    if scaling == "std":
        loc = zeroed.sum(1, keepdim=True) / count
        variance = ((past - loc).masked_fill(~observed, 0.0) ** 2).sum(1, keepdim=True) / count
        scale = torch.sqrt(variance + 1e-5)
    else:
        loc, scale = torch.zeros_like(count, dtype=past.dtype), zeroed.abs().sum(1, keepdim=True) / count
    assert_close(outputs.loc, loc)
    assert_close(outputs.scale, scale)


# ---- rolling generation -----------------------------------------------------------------------------


def test_rolled_point_forecast_starts_with_the_one_shot_forecast():
    model = make_model(loss="mse", patch_stride=2)
    past = sinusoids(3, 30, seed=6)
    rolled = model.generate(past, prediction_length=int(2.5 * HORIZON)).sequences[:, 0]
    assert torch.equal(rolled[:, :HORIZON], model(past).prediction_outputs)


@pytest.mark.parametrize(("prediction_length", "stride"), [(8, 4), (8, 2), (6, 4)])  # (6, 4): off the patch grid
def test_rolling_from_the_state_equals_rerunning_the_extended_context(prediction_length, stride):
    """Block k of the rolled forecast starts k * shift steps after the context (shift: the steps of whole
    patch strides in a block); re-running the model on the context extended by the rolled forecast up to
    there gives the same block, from the first value the earlier blocks did not already give."""
    model = make_model(loss="mse", scaling=None, prediction_length=prediction_length, patch_stride=stride,
                       layer_types=["mlstm", "slstm"])
    past = sinusoids(2, 30, seed=7)
    horizon = int(2.5 * prediction_length)
    rolled = model.generate(past, prediction_length=horizon).sequences[:, 0]

    shift = prediction_length // stride * stride
    for k in range(1, (horizon - prediction_length) // shift + 1):
        extended = torch.cat([past, rolled[:, : k * shift]], dim=1)
        block = model(extended).prediction_outputs  # forecasts rolled[k * shift : k * shift + prediction_length]
        first_new = prediction_length - shift
        assert_close(rolled[:, (k - 1) * shift + prediction_length : k * shift + prediction_length],
                     block[:, first_new:], rtol=1e-5, atol=1e-5)


# ---- errors -----------------------------------------------------------------------------------------


def past_and_future() -> dict[str, torch.Tensor]:
    return {"past_values": torch.randn(2, CONTEXT, CHANNELS), "future_values": torch.randn(2, HORIZON, CHANNELS)}


def with_nan(values: torch.Tensor) -> torch.Tensor:
    values = values.clone()
    values[0, 3, 1] = float("nan")
    return values


ERROR_CASES = {
    "past rank": ({"past_values": torch.randn(2, CONTEXT)}, "past_values"),
    "past channels": ({"past_values": torch.randn(2, CONTEXT, CHANNELS + 1)}, "past_values"),
    "past too short": ({"past_values": torch.randn(2, 3, CHANNELS)}, "past_values"),
    "past NaN observed": ({"past_values": with_nan(torch.randn(2, CONTEXT, CHANNELS))}, "past_values"),
    "past mask shape": ({"past_observed_mask": torch.ones(2, CONTEXT - 1, CHANNELS)}, "past_observed_mask"),
    "future length": ({"future_values": torch.randn(2, HORIZON + 1, CHANNELS)}, "future_values"),
    "future batch": ({"future_values": torch.randn(3, HORIZON, CHANNELS)}, "future_values"),
    "future NaN observed": ({"future_values": with_nan(torch.randn(2, HORIZON, CHANNELS))}, "future_values"),
    "future mask shape": ({"future_observed_mask": torch.ones(2, HORIZON, 1)}, "future_observed_mask"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_bad_inputs_raise_value_errors_naming_the_argument(case):
    overrides, name = ERROR_CASES[case]
    with pytest.raises(ValueError, match=f"^{name} "):
        make_model()(**{**past_and_future(), **overrides})


def test_generate_rejects_horizons_it_cannot_roll_to():
    model = make_model(prediction_length=2, patch_stride=4)
    past = torch.randn(1, CONTEXT, CHANNELS)
    assert model.generate(past).sequences.shape == (1, 1, 2, CHANNELS)
    with pytest.raises(ValueError, match="^prediction_length=5 "):
        model.generate(past, prediction_length=5)


# ---- saving, Auto class, Trainer ----------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_save_and_load_are_exact(loss, tmp_path):
    model = make_model(loss=loss, layer_types=["mlstm", "slstm"])
    model.save_pretrained(tmp_path)
    loaded = AutoModelForTimeSeriesPrediction.from_pretrained(tmp_path).eval()

    assert type(loaded) is XLSTMForTimeSeriesPrediction
    expected, actual = model.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    past = sinusoids(2, CONTEXT, seed=8)
    assert_close(loaded(past).prediction_outputs, model(past).prediction_outputs, rtol=0, atol=0)


class SinusoidWindows(Dataset):
    def __init__(self, num_windows: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.past, self.future = random_windows(sinusoids(32, 160, seed), num_windows, generator)

    def __len__(self) -> int:
        return len(self.past)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"past_values": self.past[index], "future_values": self.future[index]}


def test_trainer_steps_lower_the_loss(tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), label_names=["future_values"], max_steps=20, per_device_train_batch_size=32,
        per_device_eval_batch_size=32, learning_rate=1e-2, logging_steps=5, save_strategy="no", report_to="none",
        use_cpu=True, dataloader_num_workers=0,
    )
    trainer = Trainer(model=make_model().train(), args=args, train_dataset=SinusoidWindows(640, seed=9),
                      eval_dataset=SinusoidWindows(64, seed=10))
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4 and logged[-1] < 0.5 * logged[0]
    assert math.isfinite(trainer.evaluate()["eval_loss"])
