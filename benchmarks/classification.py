"""Time-series classification on UCR GunPoint and ItalyPowerDemand (their train/test splits ship in the aeon
wheel): xLSTM (XLSTMForSequenceClassification over the raw values) against 1-nearest-neighbour with
Euclidean distance, the archive's reference, and an LSTM with about the same parameters and training.

    python benchmarks/classification.py            # the study (results/classification.json, .png)
    python benchmarks/classification.py --quick    # seconds, a smoke run

Series are z-normalised as the archive does. The neural models train on the training split only (AdamW,
the same steps, batch and learning rate, `seeds` times); the score is test accuracy (mean and spread over
the seeds).
"""

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from contenders import fit_width, parameter_count
from torch import nn
from training import grouped_bars, publish, study_parser, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from classify_gunpoint import load_ucr, one_nearest_neighbour  # noqa: E402

from xlstm_hf import XLSTMConfig, XLSTMForSequenceClassification  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

NEURAL = {"xlstm-ms": ["mlstm", "slstm"], "xlstm-m": ["mlstm", "mlstm"], "lstm": None}
CONTENDERS = ("1-nn euclidean", *NEURAL)


class LSTMClassifier(nn.Module):
    def __init__(self, width: int, num_labels: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(1, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, num_labels)

    def forward(self, past_values: torch.Tensor) -> torch.Tensor:
        """past_values [B, T, 1] -> logits [B, num_labels] from the last state."""
        return self.head(self.lstm(past_values)[0][:, -1])


def make_neural(name: str, width: int, num_labels: int) -> nn.Module:
    if NEURAL[name] is None:
        return LSTMClassifier(width, num_labels)
    config = XLSTMConfig(
        vocab_size=None, num_input_channels=1, hidden_size=width, num_hidden_layers=2, num_heads=4,
        layer_types=NEURAL[name], num_labels=num_labels, chunk_size=32,
    )
    return XLSTMForSequenceClassification(config)


def logits_of(model: nn.Module, values: torch.Tensor) -> torch.Tensor:
    if isinstance(model, LSTMClassifier):
        return model(values)
    return model(past_values=values).logits


def run_neural(name: str, data: dict, args: argparse.Namespace) -> dict:
    (train_values, train_labels), (test_values, test_labels) = data["train"], data["test"]
    num_labels = int(train_labels.max()) + 1
    width = fit_width(lambda width: make_neural(name, width, num_labels), args.budget)
    values, labels = torch.tensor(train_values[..., None]), torch.tensor(train_labels)

    def next_batch(generator):
        rows = torch.randint(0, len(values), (args.batch_size,), generator=generator)
        return values[rows], labels[rows]

    accuracies = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = make_neural(name, width, num_labels)
        train(model, next_batch, args.steps, args.learning_rate, seed,
              loss_of=lambda model, batch: F.cross_entropy(logits_of(model, batch[0]), batch[1]))
        model.eval()
        with torch.no_grad():
            predicted = logits_of(model, torch.tensor(test_values[..., None])).argmax(-1).numpy()
        accuracies.append(float((predicted == test_labels).mean()))
    return {"parameters": parameter_count(model), "accuracy": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies)), "accuracies": accuracies}


def run(name: str, data: dict, args: argparse.Namespace) -> dict:
    if name in NEURAL:
        result = run_neural(name, data, args)
    else:
        predicted = one_nearest_neighbour(data["train"][0], data["train"][1], data["test"][0])
        result = {"accuracy": float((predicted == data["test"][1]).mean())}
    spread = f" +- {result['accuracy_std']:.3f} ({result['parameters']:,} parameters)" if name in NEURAL else ""
    print(f"  {name:15} accuracy {result['accuracy']:.3f}{spread}")
    return result


def plot(results: dict) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(7, 3.8))
    grouped_bars(axis, results, CONTENDERS, "accuracy")
    axis.set(ylabel="test accuracy", ylim=(0.4, 1.15), title="UCR classification")
    axis.legend(fontsize=8, ncol=4, loc="upper center")
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--datasets", nargs="+", default=["GunPoint", "ItalyPowerDemand"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=30_000, help="parameters of every neural contender")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.steps, args.seeds, args.budget = ["ItalyPowerDemand"], 2, 1, 3_000
    results = {}
    for name in args.datasets:
        data = load_ucr(name)
        print(f"{name}: {len(data['train'][0])} training and {len(data['test'][0])} test series of "
              f"{data['train'][0].shape[1]} steps")
        results[name] = {contender: run(contender, data, args) for contender in CONTENDERS}
    publish(args, "classification", results, plot)
    return results


if __name__ == "__main__":
    main()
