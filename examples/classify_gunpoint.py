"""Classify time series (UCR GunPoint: hand movements, drawing a gun or pointing a finger) with an xLSTM over
the raw values, against 1-nearest-neighbour with Euclidean distance, the archive's reference classifier.

Everything runs offline on the CPU (a minute or two at the default size):

1. read GunPoint's train and test splits (50 / 150 series of 150 steps) from the `.ts` files that ship
   inside the `aeon` wheel (read as text; aeon itself is not imported);
2. train `XLSTMForSequenceClassification` without vocabulary (`past_values [B, T, 1]`, z-normalised per
   series as the archive does) with `Trainer` on `datasets` rows;
3. compare test accuracy with 1-NN Euclidean;
4. save, reload with `AutoModelForSequenceClassification`, and write `metrics.json` and a plot of example
   series of both classes with the xLSTM's predictions (`series.png`).

    python examples/classify_gunpoint.py            # the default run
    python examples/classify_gunpoint.py --quick    # a smoke run of a few seconds
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments, set_seed

from xlstm_hf import XLSTMConfig, XLSTMForSequenceClassification

QUICK_DEFAULTS = {"hidden_size": 16, "steps": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/gunpoint"))
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def read_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """(values [N, T], labels) of a univariate, equal-length `.ts` file: after the @data line, one series
    per line as comma-separated values, a colon, the label."""
    lines = path.read_text().splitlines()
    rows = [line for line in lines[[line.strip().lower() for line in lines].index("@data") + 1 :] if line.strip()]
    values = np.array([[float(v) for v in row.rsplit(":", 1)[0].split(",")] for row in rows], dtype=np.float32)
    return values, [row.rsplit(":", 1)[1].strip() for row in rows]


def load_ucr(name: str = "GunPoint") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (values, labels 0..K-1), "test": ...} of the UCR data set `name` that ships in the aeon
    wheel (GunPoint, ItalyPowerDemand, ...), each series z-normalised."""
    spec = importlib.util.find_spec("aeon")  # only its data files are read
    if spec is None:
        raise SystemExit(f"{name} comes from the aeon wheel: run `pip install aeon`.")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    splits, classes = {}, None
    for split in ("train", "test"):
        values, labels = read_ts(folder / f"{name}_{split.upper()}.ts")
        classes = classes or sorted(set(labels))
        values = (values - values.mean(1, keepdims=True)) / values.std(1, keepdims=True)
        splits[split] = values, np.array([classes.index(label) for label in labels])
    return splits


def as_dataset(values: np.ndarray, labels: np.ndarray) -> Dataset:
    return Dataset.from_dict({"past_values": values[..., None], "labels": labels}).with_format("torch")


# ---- model, baseline, plot -----------------------------------------------------------------------------


def build_model(args: argparse.Namespace) -> XLSTMForSequenceClassification:
    config = XLSTMConfig(
        vocab_size=None,
        num_input_channels=1,
        hidden_size=args.hidden_size,
        num_hidden_layers=2,
        num_heads=4,
        layer_types=["mlstm", "slstm"],
        num_labels=2,
        chunk_size=32,
    )
    set_seed(args.seed)
    return XLSTMForSequenceClassification(config)


def one_nearest_neighbour(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    distances = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    return train_labels[distances.argmin(1)]


def plot_series(path: Path, values: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for label, axis in enumerate(axes):
        for row in np.flatnonzero(labels == label)[:6]:
            style = "-" if predicted[row] == label else "--"
            axis.plot(values[row], style, linewidth=1)
        axis.set(title=f"class {label} (dashed: misclassified by the xLSTM)", xlabel="step")
    axes[0].set_ylabel("z-normalised position")
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    data = load_ucr()
    (train_values, train_labels), (test_values, test_labels) = data["train"], data["test"]
    print(f"GunPoint: {len(train_values)} training / {len(test_values)} test series of {train_values.shape[1]} steps")

    model = build_model(args)
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
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    Trainer(model=model, args=training_args, train_dataset=as_dataset(train_values, train_labels)).train()
    model.save_pretrained(args.output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.output_dir).eval()
    with torch.no_grad():
        predicted = model(past_values=torch.from_numpy(test_values[..., None])).logits.argmax(-1).numpy()

    nearest = one_nearest_neighbour(train_values, train_labels, test_values)
    metrics = {
        "accuracy": {
            "xlstm": float((predicted == test_labels).mean()),
            "one_nn_euclidean": float((nearest == test_labels).mean()),
        },
        "test_series": len(test_values),
    }
    plot_series(args.output_dir / "series.png", test_values, test_labels, predicted)
    write_metrics(args.output_dir, metrics)
    accuracy = metrics["accuracy"]
    print(
        f"RESULT test accuracy xLSTM {accuracy['xlstm']:.3f} vs 1-NN Euclidean {accuracy['one_nn_euclidean']:.3f}"
        f" | saved to {args.output_dir}"
    )
    return metrics


if __name__ == "__main__":
    main()
