"""The one training recipe of the synthetic studies, and what they share to report: every contender gets
the same optimiser, steps, batches and learning-rate schedule; results go to `benchmarks/results/`."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

# a batch: (input_ids [B, T], labels [B, T] with -100 where nothing is to be predicted)
Batch = tuple[torch.Tensor, torch.Tensor]


def train(
    model: nn.Module, next_batch: Callable[[torch.Generator], Batch], steps: int, learning_rate: float, seed: int = 0
) -> float:
    """AdamW with linear warm-up (10 %) and cosine decay, gradients clipped at 1; -> seconds taken."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(steps // 10, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / steps)).item())),
    )
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        input_ids, labels = next_batch(generator)
        loss = F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
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


def save(args, name: str, results: dict) -> Path:
    """Write the study's settings (its command-line arguments, less the output folder, which is this
    machine's) and `results` to args.output_dir/name.json; -> that path (the plot goes beside it, .png)."""
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"{name}.json"
    settings = {key: value for key, value in vars(args).items() if key != "output_dir"}
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=2, default=str))
    return path
