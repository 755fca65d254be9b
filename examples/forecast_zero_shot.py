"""Zero-shot forecasts of half-hourly electricity demand (the `taylor` series) with TiRex, NX-AI's pre-trained
forecaster, loaded into `XLSTMForTimeSeriesPrediction` from its own checkpoint (converted on load).

It runs the real TiRex only: the weights must be in the Hugging Face Hub cache (or given as a file or
folder with `--checkpoint`). Where they are not, it says how to get them and exits without forecasting.
The weights are under the NXAI Community License, which you accept by downloading them (see the README).
Then, offline on the CPU:

1. read `taylor` (12 weeks of half-hourly demand in England and Wales, 2000; it ships inside `pmdarima`);
2. forecast every day of the last two weeks from the 2048 half-hours before it (rolling origin), without any
   training, and score the median (MASE against the weekly seasonal naive forecast) and the quantiles
   (weighted quantile loss);
3. forecast the whole last week at once from the context before it (7 days, 11 patches of masked rollout);
4. write `metrics.json` and `zero_shot.png`.

    huggingface-cli download NX-AI/TiRex model.ckpt   # once; downloading accepts the NXAI Community License
    python examples/forecast_zero_shot.py
    python examples/forecast_zero_shot.py --quick     # two test days
"""

import argparse
from pathlib import Path

import numpy as np
from _common import parse_with_quick, plt, save_figure, write_metrics
from finetune_tirex import DAY, LEVELS, WEEK, scores
from pmdarima.datasets import load_taylor

from xlstm_hf import XLSTMForTimeSeriesPrediction
from xlstm_hf.tirex import find_tirex_checkpoint

CONTEXT = 2048  # TiRex's window


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="NX-AI/TiRex",
                        help="Hub repo id (looked up in the Hub cache only), or a model.ckpt or a folder holding it")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/forecast_zero_shot"))
    parser.add_argument("--test-days", type=int, default=14)
    return parse_with_quick(parser, argv, {"test_days": 2}, quick_help="two test days")


def cached_checkpoint(name: str) -> str | None:
    """The local TiRex checkpoint `name` names: a file or folder, or a Hub repo id already in the Hub cache
    (nothing is downloaded here)."""
    return find_tirex_checkpoint(name, local_files_only=not Path(name).exists())


def how_to_get(name: str) -> str:
    return (
        f"No TiRex checkpoint found for {name!r} (nothing is downloaded by this example, and nothing was "
        "forecast).\nTiRex's weights are under the NXAI Community License (https://huggingface.co/NX-AI/TiRex); "
        "read it: downloading them accepts it. Then download the checkpoint into the Hub cache\n"
        "    huggingface-cli download NX-AI/TiRex model.ckpt\n"
        "and run this example again (or pass --checkpoint path/to/model.ckpt)."
    )


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    checkpoint = cached_checkpoint(args.checkpoint)
    if checkpoint is None:
        print(how_to_get(args.checkpoint))
        return None
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model = XLSTMForTimeSeriesPrediction.from_pretrained(checkpoint)
    series = load_taylor(as_series=False).astype(np.float32)
    test_start = len(series) - args.test_days * DAY
    actual, history = series[test_start:], series[:test_start]
    print(f"TiRex ({model.num_parameters():,} parameters) from {checkpoint}; taylor: {len(series)} half-hours, "
          f"{args.test_days} test days")

    origins = [test_start + day * DAY for day in range(args.test_days)]
    daily = model.forecast(np.stack([series[o - CONTEXT : o] for o in origins]), prediction_length=DAY)
    quantiles = daily.quantiles.reshape(-1, len(LEVELS)).numpy()  # [test steps, Q]
    week_origin = len(series) - WEEK
    week = model.forecast(series[week_origin - CONTEXT : week_origin], prediction_length=WEEK).quantiles[0].numpy()
    naive = series[test_start - WEEK : len(series) - WEEK]
    metrics = {
        "checkpoint": args.checkpoint,
        "day_ahead": {"tirex": scores(actual, quantiles, history),
                      "seasonal_naive": scores(actual, np.repeat(naive[:, None], len(LEVELS), 1), history)},
        "week_ahead": {"tirex": scores(series[week_origin:], week, series[:week_origin])},
    }
    plot(args.output_dir / "zero_shot.png", actual, quantiles, series[week_origin:], week)
    write_metrics(args.output_dir, metrics)
    day_ahead = metrics["day_ahead"]
    print(f"RESULT zero-shot day-ahead MASE TiRex {day_ahead['tirex']['mase']:.3f} vs seasonal naive "
          f"{day_ahead['seasonal_naive']['mase']:.3f} | wQL {day_ahead['tirex']['weighted_quantile_loss']:.4f} | "
          f"week-ahead MASE {metrics['week_ahead']['tirex']['mase']:.3f} | saved to {args.output_dir}")
    return metrics


def plot(path: Path, actual: np.ndarray, quantiles: np.ndarray, week_actual: np.ndarray, week: np.ndarray) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(14, 4))
    median = LEVELS.index(0.5)
    for axis, truth, forecast, title in ((axes[0], actual, quantiles, "day-ahead, rolling"),
                                         (axes[1], week_actual, week, "the last week at once")):
        days = np.arange(len(truth)) / DAY
        axis.fill_between(days, forecast[:, 0], forecast[:, -1], alpha=0.25, label="TiRex 10-90 %")
        axis.plot(days, forecast[:, median], label="TiRex median")
        axis.plot(days, truth, "k", linewidth=0.8, label="actual")
        axis.set(xlabel="days", ylabel="demand (MW)", title=f"taylor, zero-shot: {title}")
        axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


if __name__ == "__main__":
    main()
