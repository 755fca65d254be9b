"""Forecasting on real series that ship offline (taylor, co2, sunspots, AirPassengers), by rolling origin:
xLSTM (XLSTMForTimeSeriesPrediction, quantile head) against seasonal naive, Holt-Winters (statsmodels),
an LSTM and PatchTST (transformers), the neural ones with about the same parameters and the same training.

    python benchmarks/forecasting.py            # the study (results/forecasting.json, .png)
    python benchmarks/forecasting.py --quick    # seconds, a smoke run

Each series ends in a test period of `origins` forecasts of `horizon` steps, one from each origin, each
from the `context` steps before it (the statistical methods fit on the whole history before it). The neural
models train once, on windows drawn from the data before the first origin (AdamW, the same steps, batch and
learning rate, `seeds` times), and forecast every origin. Scores, averaged over origins: MASE (the mean
absolute error over that of the in-sample seasonal naive forecast before the first origin; the median for
quantile forecasts) and the weighted quantile loss at levels 0.1 .. 0.9 (a point forecast counts as all
its quantiles; it then equals the absolute error over the sum of |actual|).
"""

import argparse
import warnings
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from contenders import fit_width, parameter_count
from pmdarima.datasets import load_airpassengers, load_taylor
from statsmodels.datasets import co2, sunspots
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from torch import nn
from training import grouped_bars, publish, study_parser, train
from transformers import PatchTSTConfig, PatchTSTForPrediction

from xlstm_hf import XLSTMConfig, XLSTMForTimeSeriesPrediction

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

LEVELS = [round(0.1 * level, 1) for level in range(1, 10)]
NEURAL = ("xlstm", "patchtst", "lstm")
CONTENDERS = ("seasonal naive", "holt-winters", *NEURAL)


@dataclass
class Series:
    values: np.ndarray
    period: int  # of the seasonal naive forecast and Holt-Winters
    context: int
    horizon: int
    origins: int  # test forecasts, `horizon` apart, at the end of the series
    patch: int  # patch length (and stride) of xLSTM and PatchTST
    seasonal: str  # Holt-Winters' seasonal component: "add" or "mul"

    @property
    def first_origin(self) -> int:
        return len(self.values) - self.origins * self.horizon

    def origin(self, index: int) -> int:
        return self.first_origin + index * self.horizon


def load_series() -> dict[str, Series]:
    weekly_co2 = co2.load_pandas().data["co2"].interpolate().to_numpy()  # 59 missing weeks, interpolated
    yearly_sunspots = sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    return {
        "taylor": Series(load_taylor(), period=336, context=336, horizon=48, origins=14, patch=12, seasonal="add"),
        "co2": Series(weekly_co2, period=52, context=104, horizon=13, origins=8, patch=8, seasonal="add"),
        "sunspots": Series(yearly_sunspots, period=11, context=44, horizon=11, origins=5, patch=4, seasonal="add"),
        "airpassengers": Series(
            load_airpassengers(), period=12, context=36, horizon=12, origins=3, patch=4, seasonal="mul"
        ),
    }


# ---- forecasters: each -> quantiles [origins, horizon, levels] (a point forecast repeated) --------------


def around_origins(series: Series, start: int, end: int) -> np.ndarray:
    """[origins, end - start]: the values from `start` to `end` steps after each origin."""
    return np.stack([series.values[series.origin(i) + start : series.origin(i) + end] for i in range(series.origins)])


def seasonal_naive(series: Series) -> np.ndarray:
    """The last season, repeated."""
    forecasts = []
    for index in range(series.origins):
        last_season = series.values[series.origin(index) - series.period : series.origin(index)]
        forecasts.append(np.resize(last_season, series.horizon))
    return np.repeat(np.stack(forecasts)[..., None], len(LEVELS), axis=-1)


def holt_winters(series: Series) -> np.ndarray:
    """Damped additive trend and the series' seasonality, fitted on the whole history before each origin."""
    forecasts = []
    for index in range(series.origins):
        history = series.values[: series.origin(index)]
        model = ExponentialSmoothing(
            history, trend="add", damped_trend=True, seasonal=series.seasonal, seasonal_periods=series.period,
            initialization_method="heuristic" if len(history) >= 10 + 2 * series.period else "estimated",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings of the optimiser
            forecasts.append(model.fit().forecast(series.horizon))
    return np.repeat(np.stack(forecasts)[..., None], len(LEVELS), axis=-1)


class LSTMForecaster(nn.Module):
    """The context scaled by its mean and standard deviation, an LSTM, the horizon from its last state."""

    def __init__(self, width: int, horizon: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(1, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, horizon)

    def forward(self, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """past [B, L, 1] -> (scaled forecast [B, H], loc [B, 1], scale [B, 1])."""
        loc, scale = past.mean(1), past.std(1).clamp_min(1e-5)
        hidden, _ = self.lstm((past - loc[:, None]) / scale[:, None])
        return self.head(hidden[:, -1]), loc, scale


def make_neural(name: str, series: Series, width: int) -> nn.Module:
    shape = {"context_length": series.context, "prediction_length": series.horizon}
    patching = {"patch_length": series.patch, "patch_stride": series.patch}
    if name == "xlstm":
        config = XLSTMConfig(
            hidden_size=width, num_hidden_layers=2, num_heads=4, layer_types=["mlstm", "slstm"], **shape,
            **patching, loss="quantile", quantiles=LEVELS,
        )
        return XLSTMForTimeSeriesPrediction(config)
    if name == "patchtst":
        config = PatchTSTConfig(
            num_input_channels=1, d_model=width, num_hidden_layers=2, num_attention_heads=4, ffn_dim=2 * width,
            scaling="std", loss="mse", **shape, **patching,
        )
        return PatchTSTForPrediction(config)
    return LSTMForecaster(width, series.horizon)


def neural_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    past, future = batch
    if isinstance(model, LSTMForecaster):
        forecast, loc, scale = model(past)
        return F.mse_loss(forecast, (future[..., 0] - loc) / scale)
    return model(past_values=past, future_values=future).loss


@torch.no_grad()
def neural_quantiles(model: nn.Module, contexts: np.ndarray) -> np.ndarray:
    model.eval()
    past = torch.tensor(contexts[..., None], dtype=torch.float32)
    if isinstance(model, LSTMForecaster):
        forecast, loc, scale = model(past)
        point = forecast * scale + loc
    else:
        point = model(past_values=past).prediction_outputs[:, :, 0]  # [O, H] or [O, H, levels]
    point = point.numpy()
    return point if point.ndim == 3 else np.repeat(point[..., None], len(LEVELS), axis=-1)


def training_windows(series: Series, batch_size: int):
    """Random (past [B, L, 1], future [B, H, 1]) windows from before the first origin."""
    values = torch.tensor(series.values[: series.first_origin], dtype=torch.float32)
    last_start = len(values) - series.context - series.horizon

    def next_batch(generator: torch.Generator):
        starts = torch.randint(0, last_start + 1, (batch_size,), generator=generator)
        windows = torch.stack([values[start : start + series.context + series.horizon] for start in starts])
        return windows[:, : series.context, None], windows[:, series.context :, None]

    return next_batch


# ---- scores ----------------------------------------------------------------------------------------------


def scores(series: Series, quantiles: np.ndarray) -> dict:
    """MASE of the median and weighted quantile loss of quantiles [origins, horizon, levels]."""
    actual = around_origins(series, 0, series.horizon)
    history = series.values[: series.first_origin]
    naive_error = np.mean(np.abs(history[series.period :] - history[: -series.period]))
    median = quantiles[..., LEVELS.index(0.5)]
    errors = actual[..., None] - quantiles
    pinball = np.maximum(np.asarray(LEVELS) * errors, (np.asarray(LEVELS) - 1) * errors)
    return {
        "mase": float(np.mean(np.abs(actual - median)) / naive_error),
        "wql": float(2 * pinball.sum() / (len(LEVELS) * np.abs(actual).sum())),
    }


def run_neural(name: str, series: Series, args: argparse.Namespace) -> dict:
    width = fit_width(lambda width: make_neural(name, series, width), args.budget)
    runs = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = make_neural(name, series, width)
        seconds = train(model, training_windows(series, args.batch_size), args.steps, args.learning_rate, seed,
                        loss_of=neural_loss)
        quantiles = neural_quantiles(model, around_origins(series, -series.context, 0))
        runs.append({**scores(series, quantiles), "train_seconds": seconds})
    summary = {"parameters": parameter_count(model), "runs": runs}
    for metric in ("mase", "wql"):
        values = [run[metric] for run in runs]
        summary[metric], summary[f"{metric}_std"] = float(np.mean(values)), float(np.std(values))
    return summary


def run(name: str, series: Series, args: argparse.Namespace) -> dict:
    if name in NEURAL:
        result = run_neural(name, series, args)
    else:
        result = scores(series, (seasonal_naive if name == "seasonal naive" else holt_winters)(series))
    print(f"  {name:15} MASE {result['mase']:.3f}  wQL {result['wql']:.4f}"
          + (f"  ({result['parameters']:,} parameters)" if "parameters" in result else ""))
    return result


def plot(results: dict) -> plt.Figure:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, metric in zip(axes, ("mase", "wql")):
        grouped_bars(axis, results, CONTENDERS, metric)
        axis.set(title={"mase": "MASE (lower is better)", "wql": "weighted quantile loss"}[metric])
    axes[0].axhline(1, color="gray", linestyle=":")
    axes[1].legend(fontsize=8)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--series", nargs="+", default=["taylor", "co2", "sunspots", "airpassengers"])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=30_000, help="parameters of every neural contender")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.steps, args.seeds, args.budget = ["airpassengers", "sunspots"], 2, 1, 3_000
    all_series = load_series()
    results = {}
    for name in args.series:
        print(f"{name}: {len(all_series[name].values)} steps, {all_series[name].origins} origins")
        results[name] = {contender: run(contender, all_series[name], args) for contender in CONTENDERS}
    publish(args, "forecasting", results, plot)
    return results


if __name__ == "__main__":
    main()
