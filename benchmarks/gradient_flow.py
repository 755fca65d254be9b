"""Gradient flow: how much the loss at the last step of a sequence reacts to each input, |d loss(T) /
d x_t| over t, for the LSTM and xLSTM variants, at initialisation and after training on a task that needs
the first token at the end (the "vanishing gradient" the xLSTM's exponential gating is to relieve).

    python benchmarks/gradient_flow.py            # the study (results/gradient_flow.json, .png)
    python benchmarks/gradient_flow.py --quick    # seconds, a smoke run

Task: T random tokens; the label at the last position is the first token (1 of 8), no other label. The
norm of the gradient with respect to each input embedding is averaged over a batch; the table reports
its value at t = 0 relative to t = T - 1 (1 means the first input counts as much as the last). Every
contender trains `--seeds` times (seed s: its weights and its training batches; the probe batch is the
same for all); results are the mean and standard deviation over the seeds (of the ratios: of their
base-10 logarithms, which span orders of magnitude).
"""

import argparse
import math

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from contenders import build, embed
from training import accuracy, over_seeds, publish, study_parser, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

CONTENDERS = ("lstm", "xlstm-s", "xlstm-m", "xlstm-ms")
VOCAB, CLASSES = 16, 8


def batch(size: int, length: int, generator: torch.Generator):
    tokens = torch.randint(0, VOCAB, (size, length), generator=generator)
    tokens[:, 0] = torch.randint(0, CLASSES, (size,), generator=generator)
    labels = torch.full_like(tokens, -100)
    labels[:, -1] = tokens[:, 0]
    return tokens, labels


def gradient_norms(model, tokens: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """[T]: the mean over the batch of |d loss(T) / d embedding_t|."""
    model.eval()
    embeddings = embed(model, tokens).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeddings)
    F.cross_entropy(logits[:, -1], labels[:, -1]).backward()
    return embeddings.grad.norm(dim=-1).mean(0).tolist()


def log10(value: float) -> float:
    return math.log10(value) if value > 0 else -math.inf


def run_seed(name: str, seed: int, args: argparse.Namespace) -> dict:
    model, parameters = build(name, vocab_size=VOCAB, num_outputs=CLASSES, layers=2, budget=args.budget, seed=seed)
    probe = batch(args.probe_size, args.length, torch.Generator().manual_seed(99))
    at_init = gradient_norms(model, *probe)
    seconds = train(
        model, lambda generator: batch(args.batch_size, args.length, generator), args.steps, args.learning_rate,
        seed=seed,
    )
    trained = gradient_norms(model, *probe)
    result = {
        "parameters": parameters,
        "train_seconds": seconds,
        "accuracy_after_training": accuracy(model, probe),
        "log10_first_over_last_at_init": log10(at_init[0] / at_init[-1]),
        "log10_first_over_last_trained": log10(trained[0] / trained[-1]),
        "log10_norms_at_init": [log10(value) for value in at_init],
        "log10_norms_trained": [log10(value) for value in trained],
    }
    print(
        f"{name:9} seed {seed} {parameters:7,} parameters  |grad x_0| / |grad x_T-1|: init "
        f"{at_init[0] / at_init[-1]:.2e}, trained {trained[0] / trained[-1]:.2e}; accuracy "
        f"{result['accuracy_after_training']:.2f}", flush=True
    )
    return result


def run(name: str, args: argparse.Namespace) -> dict:
    return over_seeds([run_seed(name, seed, args) for seed in range(args.seeds)])


def plot(results: dict) -> plt.Figure:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for axis, key, title in zip(axes, ("log10_norms_at_init", "log10_norms_trained"),
                                ("at initialisation", "after training")):
        for name, result in results.items():
            mean, std = np.array(result[key]), np.array(result.get(f"{key}_std", np.zeros(len(result[key]))))
            finite = np.isfinite(mean) & np.isfinite(std)
            positions = np.arange(len(mean))[finite]
            line, = axis.plot(positions, 10 ** mean[finite], label=name)
            axis.fill_between(positions, 10 ** (mean - std)[finite], 10 ** (mean + std)[finite],
                              color=line.get_color(), alpha=0.2)
        axis.set(title=title, xlabel="input position t", yscale="log")
    axes[0].set_ylabel("|d loss(T) / d x_t|\n(geometric mean, band: 1 std over seeds)")
    axes[1].legend(fontsize=8)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. seeds-1 for every contender")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--budget", type=int, default=40_000)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args(argv)
    if args.quick:
        args.length, args.steps, args.probe_size, args.budget, args.seeds = 16, 2, 4, 5_000, 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {name: run(name, args) for name in CONTENDERS}
    publish(args, "gradient_flow", results, plot)
    return results


if __name__ == "__main__":
    main()
