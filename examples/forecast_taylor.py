"""Forecast half-hourly electricity demand (the `taylor` series) with an xLSTM, and flag anomalies from its
prediction intervals.

Everything runs offline on the CPU (a few minutes at the default size):

1. read `taylor` (12 weeks of half-hourly demand in England and Wales, 2000; it ships inside `pmdarima`);
2. keep the last 2 weeks as the test period; cut the rest into windows (one week of context, one day
   ahead) with `datasets`, the last week of them for validation;
3. train `XLSTMForTimeSeriesPrediction` with the quantile loss (levels 0.05 to 0.95) with `Trainer`;
4. forecast every day of the test period from the week before it (rolling origin) and score the median
   (MASE, scaled by the in-sample weekly seasonal naive error) and the quantiles (weighted quantile loss)
   against the seasonal naive forecast (the same half-hour one week earlier);
5. inject spikes and dips into a copy of the test period, forecast it again, and flag the points far
   outside the 10-90 % interval: precision and recall against the injected anomalies;
6. save the model, reload it with `AutoModelForTimeSeriesPrediction`, and write `metrics.json` and two
   plots (`forecast.png`, `anomalies.png`) to the output folder.

    python examples/forecast_taylor.py            # the default run
    python examples/forecast_taylor.py --quick    # a smoke run of a few seconds
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from pmdarima.datasets import load_taylor
from transformers import AutoModelForTimeSeriesPrediction, Trainer, TrainingArguments, set_seed

from xlstm_hf import XLSTMConfig, XLSTMForTimeSeriesPrediction

DAY, WEEK = 48, 336  # half-hours
QUANTILES = [0.05, 0.1, 0.5, 0.9, 0.95]
QUICK_DEFAULTS = {"hidden_size": 16, "num_blocks": 1, "steps": 3, "test_days": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/forecast_taylor"))
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-blocks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--test-days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def windows(series: np.ndarray, starts: range) -> Dataset:
    """A week of context and the next day, from every start in `starts`, as a `datasets.Dataset`."""

    def generate():
        for start in starts:
            yield {
                "past_values": series[start : start + WEEK, None],
                "future_values": series[start + WEEK : start + WEEK + DAY, None],
            }

    return Dataset.from_generator(generate).with_format("torch")


def split(series: np.ndarray, test_days: int) -> tuple[Dataset, Dataset, int]:
    """(training windows, validation windows, the first test step): validation forecasts the week before
    the test period (a window a day), training everything before that (a window an hour)."""
    test_start = len(series) - test_days * DAY
    validation_start = test_start - WEEK
    train = windows(series, range(0, validation_start - WEEK - DAY + 1, 2))
    validation = windows(series, range(validation_start - WEEK, test_start - WEEK - DAY + 1, DAY))
    return train, validation, test_start


# ---- model ---------------------------------------------------------------------------------------------


def build_model(args: argparse.Namespace) -> XLSTMForTimeSeriesPrediction:
    config = XLSTMConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_blocks,
        num_heads=4,
        layer_types=(["mlstm", "slstm"] * args.num_blocks)[: args.num_blocks],
        context_length=WEEK,
        prediction_length=DAY,
        patch_length=12,
        patch_stride=12,
        loss="quantile",
        quantiles=QUANTILES,
    )
    set_seed(args.seed)
    return XLSTMForTimeSeriesPrediction(config)


def train(model, train_windows: Dataset, validation_windows: Dataset, args: argparse.Namespace) -> dict:
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        logging_steps=max(args.steps // 10, 1),
        save_strategy="no",
        label_names=["future_values"],
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_windows, eval_dataset=validation_windows)
    result = trainer.train()
    return {
        "validation_quantile_loss": trainer.evaluate()["eval_loss"],
        "train_time_s": result.metrics["train_runtime"],
    }


@torch.no_grad()
def rolling_forecasts(model, series: np.ndarray, test_start: int, test_days: int) -> np.ndarray:
    """[test_days * DAY, Q]: the quantiles of every test step, each day forecast from the week before it."""
    model.eval()
    past = np.stack([series[test_start + day * DAY - WEEK : test_start + day * DAY] for day in range(test_days)])
    quantiles = model(past_values=torch.tensor(past[..., None], dtype=torch.float32)).prediction_outputs
    return quantiles[:, :, 0].reshape(test_days * DAY, len(QUANTILES)).numpy()  # [days, DAY, 1, Q] -> [steps, Q]


# ---- scores --------------------------------------------------------------------------------------------


def mase(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray) -> float:
    """Mean absolute error scaled by that of the weekly seasonal naive forecast within `history`."""
    scale = np.mean(np.abs(history[WEEK:] - history[:-WEEK]))
    return float(np.mean(np.abs(actual - forecast)) / scale)


def weighted_quantile_loss(actual: np.ndarray, quantiles: np.ndarray) -> float:
    """2 sum_q sum_t pinball_q / (Q sum_t |actual|), the forecasting benchmarks' scaled quantile loss."""
    levels = np.asarray(QUANTILES)
    errors = actual[:, None] - quantiles
    pinball = np.maximum(levels * errors, (levels - 1) * errors)
    return float(2 * pinball.sum() / (len(QUANTILES) * np.abs(actual).sum()))


def inject_anomalies(series: np.ndarray, start: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `series` with `count` spikes and dips of 15-25 % in [start, end); and their positions."""
    generator = np.random.default_rng(seed)
    positions = np.sort(generator.choice(np.arange(start + DAY, len(series)), size=count, replace=False))
    contaminated = series.copy()
    contaminated[positions] *= 1 + generator.choice([-1, 1], size=count) * generator.uniform(0.15, 0.25, size=count)
    return contaminated, positions


def flag_anomalies(actual: np.ndarray, quantiles: np.ndarray, width: float = 1.5) -> np.ndarray:
    """Steps farther from the median than `width` times the 10-90 % interval."""
    median, low, high = quantiles[:, 2], quantiles[:, 1], quantiles[:, 3]
    return np.abs(actual - median) > width * (high - low)


# ---- plots and main ------------------------------------------------------------------------------------


def plot_forecast(path: Path, actual: np.ndarray, quantiles: np.ndarray, naive: np.ndarray) -> None:
    steps = np.arange(len(actual)) / DAY
    figure, axis = plt.subplots(figsize=(12, 4))
    axis.fill_between(steps, quantiles[:, 0], quantiles[:, 4], alpha=0.2, label="xLSTM 5-95 %")
    axis.fill_between(steps, quantiles[:, 1], quantiles[:, 3], alpha=0.3, label="xLSTM 10-90 %")
    axis.plot(steps, quantiles[:, 2], label="xLSTM median")
    axis.plot(steps, naive, ":", label="seasonal naive (a week earlier)")
    axis.plot(steps, actual, "k", linewidth=0.8, label="actual")
    axis.set(xlabel="days into the test period", ylabel="demand (MW)", title="taylor: day-ahead forecasts")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def plot_anomalies(path: Path, contaminated: np.ndarray, quantiles: np.ndarray, injected, flagged) -> None:
    steps = np.arange(len(contaminated)) / DAY
    figure, axis = plt.subplots(figsize=(12, 4))
    axis.fill_between(steps, quantiles[:, 1], quantiles[:, 3], alpha=0.3, label="xLSTM 10-90 %")
    axis.plot(steps, contaminated, "k", linewidth=0.8, label="series with injected anomalies")
    axis.plot(steps[injected], contaminated[injected], "o", mfc="none", ms=9, label="injected")
    axis.plot(steps[flagged], contaminated[flagged], "rx", label="flagged")
    axis.set(xlabel="days into the test period", ylabel="demand (MW)", title="taylor: anomalies")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    series = load_taylor(as_series=False).astype(np.float32)
    train_windows, validation_windows, test_start = split(series, args.test_days)
    print(f"taylor: {len(series)} half-hours; {len(train_windows)} training windows, test from step {test_start}")

    model = build_model(args)
    metrics = train(model, train_windows, validation_windows, args)
    model.save_pretrained(args.output_dir)
    model = AutoModelForTimeSeriesPrediction.from_pretrained(args.output_dir)

    actual = series[test_start:]
    quantiles = rolling_forecasts(model, series, test_start, args.test_days)
    naive = series[test_start - WEEK : len(series) - WEEK]
    history = series[:test_start]
    metrics.update(
        {
            "mase": {"xlstm": mase(actual, quantiles[:, 2], history), "seasonal_naive": mase(actual, naive, history)},
            "weighted_quantile_loss": {
                "xlstm": weighted_quantile_loss(actual, quantiles),
                "seasonal_naive": weighted_quantile_loss(actual, np.repeat(naive[:, None], len(QUANTILES), 1)),
            },
            "interval_coverage_10_90": float(np.mean((actual >= quantiles[:, 1]) & (actual <= quantiles[:, 3]))),
        }
    )
    plot_forecast(args.output_dir / "forecast.png", actual, quantiles, naive)

    contaminated, positions = inject_anomalies(series, test_start, count=2 * args.test_days, seed=args.seed)
    contaminated_quantiles = rolling_forecasts(model, contaminated, test_start, args.test_days)
    flagged = flag_anomalies(contaminated[test_start:], contaminated_quantiles)
    injected = np.zeros_like(flagged)
    injected[positions - test_start] = True
    true_positives = int((flagged & injected).sum())
    metrics["anomalies"] = {
        "injected": int(injected.sum()),
        "flagged": int(flagged.sum()),
        "precision": true_positives / max(int(flagged.sum()), 1),
        "recall": true_positives / int(injected.sum()),
    }
    plot_anomalies(
        args.output_dir / "anomalies.png", contaminated[test_start:], contaminated_quantiles, injected, flagged
    )

    write_metrics(args.output_dir, metrics)
    scores, wql, anomalies = metrics["mase"], metrics["weighted_quantile_loss"], metrics["anomalies"]
    print(
        f"RESULT MASE xLSTM {scores['xlstm']:.3f} vs seasonal naive {scores['seasonal_naive']:.3f} | "
        f"wQL {wql['xlstm']:.4f} vs {wql['seasonal_naive']:.4f} | anomalies precision {anomalies['precision']:.2f} "
        f"recall {anomalies['recall']:.2f} | saved to {args.output_dir}"
    )
    return metrics


if __name__ == "__main__":
    main()
