"""Gradient flow: how much the loss at the last step of a sequence reacts to each input, |d loss(T) /
d x_t| over t, for the LSTM and xLSTM variants, at initialisation and after training on a task that needs
the first token at the end (the "vanishing gradient" the xLSTM's exponential gating is to relieve).

    python benchmarks/gradient_flow.py            # the study (results/gradient_flow.json, .png)
    python benchmarks/gradient_flow.py --quick    # seconds, a smoke run

Task: T random tokens; the label at the last position is the first token (1 of 8), no other label. The
norm of the gradient with respect to each input embedding is averaged over a batch; the table reports
its value at t = 0 relative to t = T - 1 (1 means the first input counts as much as the last).
"""

import argparse

import matplotlib
import torch
import torch.nn.functional as F
from contenders import build, embed
from training import accuracy, publish, study_parser, train

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


def run(name: str, args: argparse.Namespace) -> dict:
    model, parameters = build(name, vocab_size=VOCAB, num_outputs=CLASSES, layers=2, budget=args.budget)
    probe = batch(args.probe_size, args.length, torch.Generator().manual_seed(99))
    at_init = gradient_norms(model, *probe)
    seconds = train(
        model, lambda generator: batch(args.batch_size, args.length, generator), args.steps, args.learning_rate
    )
    trained = gradient_norms(model, *probe)
    result = {
        "parameters": parameters,
        "train_seconds": seconds,
        "accuracy_after_training": accuracy(model, probe),
        "first_over_last_at_init": at_init[0] / at_init[-1],
        "first_over_last_trained": trained[0] / trained[-1],
        "norms_at_init": at_init,
        "norms_trained": trained,
    }
    print(
        f"{name:9} {parameters:7,} parameters  |grad x_0| / |grad x_T-1|: init {result['first_over_last_at_init']:.2e}"
        f", trained {result['first_over_last_trained']:.2e}; accuracy {result['accuracy_after_training']:.2f}"
    )
    return result


def plot(results: dict) -> plt.Figure:
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for axis, key, title in zip(axes, ("norms_at_init", "norms_trained"), ("at initialisation", "after training")):
        for name, result in results.items():
            axis.semilogy(result[key], label=name)
        axis.set(title=title, xlabel="input position t")
    axes[0].set_ylabel("|d loss(T) / d x_t|")
    axes[1].legend(fontsize=8)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--budget", type=int, default=40_000)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args(argv)
    if args.quick:
        args.length, args.steps, args.probe_size, args.budget = 16, 2, 4, 5_000
    torch.manual_seed(0)
    results = {name: run(name, args) for name in CONTENDERS}
    publish(args, "gradient_flow", results, plot)
    return results


if __name__ == "__main__":
    main()
