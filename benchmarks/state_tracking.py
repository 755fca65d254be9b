"""State tracking: parity and a running sum modulo 5, trained on sequences of at most 40 tokens and tested
on 40 to 256 (length generalisation). The xLSTM paper's claim: sLSTM, with its recurrent mixing and
exponential gates, tracks state like an LSTM where attention and the mLSTM do not extrapolate.

    python benchmarks/state_tracking.py            # the study (results/state_tracking.json, .png)
    python benchmarks/state_tracking.py --layers 1 # one block each (results/state_tracking_1_layers.*)
    python benchmarks/state_tracking.py --quick    # seconds, a smoke run

Task: tokens x_1..x_T (bits for parity, digits 0-4 for the sum), and at every position the label
(x_1 + ... + x_t) mod m; training supervises every position, testing scores the last one (the whole
sequence's answer). Every contender has about the same number of parameters and the same training, and
trains `--seeds` times (seed s: its weights and its training batches; the test sequences are the same for
all); results are the mean and standard deviation over the seeds. The official `xlstm` package's stacks
("official-s", "official-ms": the same blocks as "xlstm-s", "xlstm-ms") are the control: the same
recipe, data and seeds. `state_tracking_recipes.py` varies the recipe of the sLSTM stacks.
"""

import argparse

import matplotlib
import torch
from contenders import build
from training import accuracy, over_seeds, publish, study_parser, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

TASKS = {"parity": 2, "sum_mod_5": 5, "sum_mod_3": 3}  # the study runs --tasks (parity, sum_mod_5)
CONTENDERS = ("xlstm-s", "xlstm-ms", "xlstm-m", "official-s", "official-ms", "lstm", "llama")
TEST_LENGTHS = (40, 64, 128, 256)
MAX_TRAIN_LENGTH = 40


def batch(modulus: int, size: int, length: int, generator: torch.Generator, last_only: bool = False):
    tokens = torch.randint(0, modulus, (size, length), generator=generator)
    labels = tokens.cumsum(1) % modulus
    if last_only:
        labels[:, :-1] = -100
    return tokens, labels


def test_accuracies(model, modulus: int, test_size: int, lengths=TEST_LENGTHS) -> dict:
    """{length: accuracy of the last position} on the same held-out sequences for every model and seed."""
    generator = torch.Generator().manual_seed(1234)
    return {length: accuracy(model, batch(modulus, test_size, length, generator, last_only=True)) for length in lengths}


def run_seed(task: str, name: str, seed: int, args: argparse.Namespace) -> dict:
    modulus = TASKS[task]
    model, parameters = build(name, vocab_size=modulus, num_outputs=modulus, layers=args.layers, budget=args.budget,
                              seed=seed)

    def next_batch(generator):
        length = int(torch.randint(2, MAX_TRAIN_LENGTH + 1, (1,), generator=generator))
        return batch(modulus, args.batch_size, length, generator)

    seconds = train(model, next_batch, args.steps, args.learning_rate, seed=seed)
    by_length = test_accuracies(model, modulus, args.test_size)
    print(
        f"{task:10} {name:11} seed {seed} {parameters:7,} parameters  "
        + "  ".join(f"T={length}: {value:.2f}" for length, value in by_length.items())
        + f"  ({seconds:.0f} s)", flush=True
    )
    return {"parameters": parameters, "train_seconds": seconds, "accuracy_by_length": by_length}


def run(task: str, name: str, args: argparse.Namespace) -> dict:
    return over_seeds([run_seed(task, name, seed, args) for seed in range(args.seeds)])


def plot(results: dict) -> plt.Figure:
    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), sharey=True)
    for axis, (task, by_model) in zip(axes, results.items()):
        for name, result in by_model.items():
            lengths = [int(length) for length in result["accuracy_by_length"]]
            axis.errorbar(lengths, list(result["accuracy_by_length"].values()),
                          yerr=list(result.get("accuracy_by_length_std", {}).values()) or None, marker="o",
                          capsize=3, label=name, linestyle="--" if name.startswith("official") else "-")
        axis.axvline(MAX_TRAIN_LENGTH, color="gray", linestyle=":", label="longest training sequence")
        axis.axhline(1 / TASKS[task], color="gray", linestyle="--", label="chance")
        axis.set(title=task, xlabel="test length", xscale="log")
    axes[0].set_ylabel("accuracy of the last position\n(mean and std over seeds)")
    axes[-1].legend(fontsize=8)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", default=["parity", "sum_mod_5"], choices=list(TASKS))
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. seeds-1 for every contender")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--budget", type=int, default=30_000, help="parameters of every contender")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--layers", type=int, default=2, help="blocks (layers of the LSTM) of every contender")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.test_size, args.budget, args.seeds = 3, 16, 5_000, 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {task: {name: run(task, name, args) for name in args.contenders} for task in args.tasks}
    publish(args, "state_tracking" if args.layers == 2 else f"state_tracking_{args.layers}_layers", results, plot)
    return results


if __name__ == "__main__":
    main()
