"""The one training recipe of the studies, and what they share to report: every contender gets the same
optimiser, steps, batches and learning-rate schedule; results and plots go to `benchmarks/results/`."""

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

RESULTS = Path(__file__).resolve().parent / "results"

# a batch: (input_ids [B, T], labels [B, T] with -100 where nothing is to be predicted)
Batch = tuple[torch.Tensor, torch.Tensor]


def token_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross entropy of the logits [B, T, V] at the labelled positions."""
    input_ids, labels = batch
    return F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten(), ignore_index=-100)


def train(
    model: nn.Module,
    next_batch: Callable[[torch.Generator], Batch],
    steps: int,
    learning_rate: float,
    seed: int = 0,
    loss_of: Callable[[nn.Module, Batch], torch.Tensor] = token_loss,
    weight_decay: float = 0.01,
) -> float:
    """AdamW (weight decay 0.01 unless told) with linear warm-up (10 %) and cosine decay, gradients clipped
    at 1, on `loss_of(model, batch)`; -> seconds taken."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    warmup = max(steps // 10, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / steps)).item())),
    )
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss_of(model, next_batch(generator)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
    return time.perf_counter() - start


@torch.no_grad()
def accuracy(model: nn.Module, batch: Batch) -> float:
    """The share of labelled positions whose arg-max prediction is right."""
    model.eval()
    input_ids, labels = batch
    predicted = model(input_ids).argmax(-1)
    labelled = labels != -100
    return (predicted[labelled] == labels[labelled]).float().mean().item()


def over_seeds(runs: list[dict]) -> dict:
    """One result from the results of several seeds (dicts of the same keys): each number, each list of
    numbers and each dict of numbers (e.g. by length) becomes its mean over the seeds, with the standard
    deviation (numpy's, ddof 0, as in the other studies) under `key_std` and the values of the seeds under
    `key_seeds`; anything else is taken from the first seed."""
    merged = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            merged[key] = float(np.mean(values))
            merged[f"{key}_std"] = float(np.std(values))
            merged[f"{key}_seeds"] = values
        elif isinstance(first, list) and first and isinstance(first[0], (int, float)):
            merged[key] = np.mean(values, axis=0).tolist()
            merged[f"{key}_std"] = np.std(values, axis=0).tolist()
        elif isinstance(first, dict) and first and all(isinstance(v, (int, float)) for v in first.values()):
            merged[key] = {k: float(np.mean([v[k] for v in values])) for k in first}
            merged[f"{key}_std"] = {k: float(np.std([v[k] for v in values])) for k in first}
            merged[f"{key}_seeds"] = {k: [v[k] for v in values] for k in first}
        else:
            merged[key] = first
    return merged


def study_parser(docstring: str) -> argparse.ArgumentParser:
    """The command line every study has (--quick, --output-dir), described by its docstring's first paragraph."""
    parser = argparse.ArgumentParser(description=docstring.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds, a smoke run")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    return parser


def grouped_bars(axis, results: dict, contenders, metric: str) -> None:
    """One group of bars per setting of `results` ({setting: {contender: {metric: value, metric_std: spread}}}),
    one bar per contender (none where it did not run), the spread over seeds as error bars."""
    settings = list(results)
    width = 0.8 / len(contenders)
    for index, contender in enumerate(contenders):
        runs = [(position, results[setting][contender]) for position, setting in enumerate(settings)
                if contender in results[setting]]
        axis.bar([position + index * width for position, _ in runs], [run[metric] for _, run in runs], width,
                 yerr=[run.get(f"{metric}_std", 0) for _, run in runs], label=contender)
    axis.set_xticks([position + 0.4 - width / 2 for position in range(len(settings))], settings)


def publish(args, name: str, results: dict, draw: Callable[[dict], "plt.Figure"], checks: dict | None = None) -> Path:
    """Write the study's settings (its command-line arguments, less the output folder, which is this
    machine's), the `checks` made before it (if any) and `results` to args.output_dir/name.json, the figure
    `draw(results)` beside it (.png), and name both on the last line printed; -> the JSON's path."""
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{name}.json"
    settings = {key: value for key, value in vars(args).items() if key != "output_dir"}
    document = {"settings": settings, **({"checks": checks} if checks else {}), "results": results}
    path.write_text(json.dumps(document, indent=2, default=str))
    figure = draw(results)
    figure.tight_layout()
    figure.savefig(path.with_suffix(".png"), dpi=120)
    plt.close(figure)
    print(f"RESULT written to {path} and {path.with_suffix('.png').name}")
    return path
