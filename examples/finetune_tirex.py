"""Fine-tune a TiRex-shaped forecaster on half-hourly electricity demand (the `taylor` series) with `Trainer`
and the quantile loss, and show the loss falling.

TiRex's published weights (NX-AI/TiRex, NXAI Community License) cannot be downloaded on this machine, so by
default the model is TiRex's architecture with random weights: the same sLSTM blocks, patches of 32, nine
quantiles and masked-patch rollout, built from TiRex's hyper-parameters (narrower and shallower unless
`--published-size`). With the weights in the Hub cache, `--checkpoint NX-AI/TiRex` fine-tunes the real model
instead (the same code path: the checkpoint is converted on load). Everything runs offline on the CPU:

1. read `taylor` (12 weeks of half-hourly demand in England and Wales, 2000; it ships inside `pmdarima`);
2. keep the last 2 weeks as the test period; cut the rest into patch-aligned windows (10 patches of context,
   one day ahead), the last week of them for validation;
3. forecast every test day from the context before it (rolling origin) and score the median (MASE against
   the weekly seasonal naive forecast) and the quantiles (weighted quantile loss), before fine-tuning;
4. fine-tune with `Trainer` (every token's next patch, the horizon's patches masked, as TiRex trains);
5. score again, save the model, reload it with `AutoModelForTimeSeriesPrediction`, and write `metrics.json`
   and `finetune.png` (the training loss, and a test week's forecasts before and after).

    python examples/finetune_tirex.py            # the default run (a few minutes)
    python examples/finetune_tirex.py --quick    # a smoke run of seconds
"""

import argparse
from pathlib import Path

import numpy as np
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from pmdarima.datasets import load_taylor
from transformers import AutoModelForTimeSeriesPrediction, Trainer, TrainingArguments, set_seed

from xlstm_hf import XLSTMForTimeSeriesPrediction
from xlstm_hf.tirex import config_from_tirex

DAY, WEEK, PATCH = 48, 336, 32  # half-hours
CONTEXT = 10 * PATCH  # 320 half-hours: a week minus a few hours, whole patches
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
QUICK_DEFAULTS = {"width": 32, "blocks": 1, "steps": 4, "test_days": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/finetune_tirex"))
    parser.add_argument("--checkpoint", help="a TiRex checkpoint to fine-tune (file, folder or Hub repo id)")
    parser.add_argument("--published-size", action="store_true", help="random weights at TiRex's own size")
    parser.add_argument("--width", type=int, default=128, help="width of the random-weight model")
    parser.add_argument("--blocks", type=int, default=4, help="sLSTM blocks of the random-weight model")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--test-days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def windows(series: np.ndarray, starts: range) -> Dataset:
    """CONTEXT steps and the next day, from every start in `starts`, as a `datasets.Dataset`."""

    def generate():
        for start in starts:
            yield {
                "past_values": series[start : start + CONTEXT, None],
                "future_values": series[start + CONTEXT : start + CONTEXT + DAY, None],
            }

    return Dataset.from_generator(generate).with_format("torch")


def split(series: np.ndarray, test_days: int) -> tuple[Dataset, Dataset, int]:
    """(training windows, validation windows, the first test step): validation forecasts the week before
    the test period (a window a day), training everything before that (a window every two hours)."""
    test_start = len(series) - test_days * DAY
    validation_start = test_start - WEEK
    train = windows(series, range(0, validation_start - CONTEXT - DAY + 1, 4))
    validation = windows(series, range(validation_start - CONTEXT, test_start - CONTEXT - DAY + 1, DAY))
    return train, validation, test_start


# ---- model ---------------------------------------------------------------------------------------------


def build_model(args: argparse.Namespace) -> XLSTMForTimeSeriesPrediction:
    """The TiRex of `--checkpoint`, or TiRex's architecture with random weights (its hyper-parameters,
    narrower unless `--published-size`), forecasting a day by default."""
    if args.checkpoint:
        return XLSTMForTimeSeriesPrediction.from_pretrained(args.checkpoint, prediction_length=DAY)
    width, blocks, mlp = (512, 12, 2048) if args.published_size else (args.width, args.blocks, 4 * args.width)
    block_kwargs = {"embedding_dim": width, "num_blocks": blocks, "num_heads": 4}
    hyper_parameters = {
        "model_config": {"input_patch_size": PATCH, "output_patch_size": PATCH, "quantiles": LEVELS,
                         "block_kwargs": block_kwargs, "input_ff_dim": mlp},
        "train_ctx_len": 2048,
    }
    set_seed(args.seed)
    return XLSTMForTimeSeriesPrediction(config_from_tirex(hyper_parameters, prediction_length=DAY))


def train(model, train_windows: Dataset, validation_windows: Dataset, args: argparse.Namespace) -> dict:
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        logging_steps=max(args.steps // 20, 1),
        save_strategy="no",
        label_names=["future_values"],
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_windows, eval_dataset=validation_windows)
    before = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    losses = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return {
        "validation_loss": {"before": before, "after": trainer.evaluate()["eval_loss"]},
        "training_loss": losses,
        "train_time_s": result.metrics["train_runtime"],
    }


# ---- forecasts and scores ------------------------------------------------------------------------------


def rolling_forecasts(model, series: np.ndarray, test_start: int, test_days: int) -> np.ndarray:
    """[test_days * DAY, Q]: the quantiles of every test step, each day forecast from the context before it."""
    context = [series[test_start + day * DAY - CONTEXT : test_start + day * DAY] for day in range(test_days)]
    quantiles = model.eval().forecast(np.stack(context), prediction_length=DAY).quantiles  # [days, DAY, Q]
    return quantiles.reshape(test_days * DAY, len(LEVELS)).numpy()


def mase(actual: np.ndarray, forecast: np.ndarray, history: np.ndarray) -> float:
    """Mean absolute error scaled by that of the weekly seasonal naive forecast within `history`."""
    return float(np.mean(np.abs(actual - forecast)) / np.mean(np.abs(history[WEEK:] - history[:-WEEK])))


def weighted_quantile_loss(actual: np.ndarray, quantiles: np.ndarray) -> float:
    """2 sum_q sum_t pinball_q / (Q sum_t |actual|), the forecasting benchmarks' scaled quantile loss."""
    errors = actual[:, None] - quantiles
    pinball = np.maximum(np.asarray(LEVELS) * errors, (np.asarray(LEVELS) - 1) * errors)
    return float(2 * pinball.sum() / (len(LEVELS) * np.abs(actual).sum()))


def scores(actual: np.ndarray, quantiles: np.ndarray, history: np.ndarray) -> dict:
    median = quantiles[:, LEVELS.index(0.5)]
    return {"mase": mase(actual, median, history), "weighted_quantile_loss": weighted_quantile_loss(actual, quantiles)}


def plot(path: Path, losses: list, actual: np.ndarray, before: np.ndarray, after: np.ndarray) -> None:
    figure, (loss_axis, forecast_axis) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [1, 2]})
    steps, values = zip(*losses)
    loss_axis.plot(steps, values, marker="o")
    loss_axis.set(xlabel="step", ylabel="quantile loss (MW)", title="training loss")
    days = np.arange(min(len(actual), WEEK)) / DAY
    for name, quantiles, style in (("before", before, ":"), ("after", after, "-")):
        forecast_axis.plot(days, quantiles[: len(days), LEVELS.index(0.5)], style, label=f"median, {name} fine-tuning")
    forecast_axis.fill_between(days, after[: len(days), 0], after[: len(days), -1], alpha=0.25,
                               label="10-90 %, after fine-tuning")
    forecast_axis.plot(days, actual[: len(days)], "k", linewidth=0.8, label="actual")
    forecast_axis.set(xlabel="days into the test period", ylabel="demand (MW)", title="taylor: day-ahead forecasts")
    forecast_axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    series = load_taylor(as_series=False).astype(np.float32)
    train_windows, validation_windows, test_start = split(series, args.test_days)
    actual, history = series[test_start:], series[:test_start]
    print(f"taylor: {len(series)} half-hours; {len(train_windows)} training windows, test from step {test_start}")

    model = build_model(args)
    print(f"model: {'TiRex from ' + args.checkpoint if args.checkpoint else 'TiRex-shaped, random weights'}, "
          f"{model.num_parameters():,} parameters")
    before = rolling_forecasts(model, series, test_start, args.test_days)
    metrics = train(model, train_windows, validation_windows, args)
    after = rolling_forecasts(model, series, test_start, args.test_days)

    model.save_pretrained(args.output_dir)
    reloaded = AutoModelForTimeSeriesPrediction.from_pretrained(args.output_dir)
    assert np.array_equal(rolling_forecasts(reloaded, series, test_start, args.test_days), after)
    naive = series[test_start - WEEK : len(series) - WEEK]
    metrics["test"] = {
        "before_fine_tuning": scores(actual, before, history),
        "after_fine_tuning": scores(actual, after, history),
        "seasonal_naive": scores(actual, np.repeat(naive[:, None], len(LEVELS), 1), history),
    }
    metrics["model"] = args.checkpoint or ("TiRex-shaped, random weights", model.num_parameters())
    plot(args.output_dir / "finetune.png", metrics["training_loss"], actual, before, after)
    write_metrics(args.output_dir, metrics)

    first, last = metrics["training_loss"][0][1], metrics["training_loss"][-1][1]
    test = metrics["test"]
    print(
        f"RESULT training loss {first:.1f} -> {last:.1f} | validation loss {metrics['validation_loss']['before']:.1f}"
        f" -> {metrics['validation_loss']['after']:.1f} | test MASE {test['before_fine_tuning']['mase']:.2f} -> "
        f"{test['after_fine_tuning']['mase']:.2f} (seasonal naive {test['seasonal_naive']['mase']:.2f}) | "
        f"saved to {args.output_dir}"
    )
    return metrics


if __name__ == "__main__":
    main()
