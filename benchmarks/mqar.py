"""Memory capacity: multi-query associative recall (MQAR, as Zoology defines it, Arora et al. 2023), at
several sequence lengths and numbers of key-value pairs, xLSTM variants against torch's LSTM and GRU,
a Llama and a Mamba from transformers, all with about the same parameters and the same training.

    python benchmarks/mqar.py            # the study (results/mqar.json, .png)
    python benchmarks/mqar.py --quick    # seconds, a smoke run

Every contender trains `--seeds` times (seed s: its weights and its training batches; the test sequences
are the same for all); the score is the mean and standard deviation over the seeds.

A sequence holds `pairs` key-value pairs (k_1 v_1 ... k_p v_p; keys distinct, from their own vocabulary,
values from another), then, in the rest of the sequence, queries: keys of those pairs in random order at
random positions with random filler tokens between them. The label at a query is its key's value; the
score is the accuracy over all queries of held-out sequences. The claim: the mLSTM's matrix memory
recalls like attention, where scalar-state recurrences (LSTM, GRU, sLSTM) run out of capacity.
"""

import argparse

import matplotlib
import torch
from contenders import build
from training import accuracy, grouped_bars, over_seeds, publish, study_parser, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

CONTENDERS = ("xlstm-m", "xlstm-ms", "xlstm-s", "lstm", "gru", "llama", "mamba")
KEYS, VALUES = 64, 64
FILLER = 0  # token ids: filler 0, keys 1..KEYS, values KEYS+1..KEYS+VALUES
VOCAB = 1 + KEYS + VALUES


def batch(size: int, length: int, pairs: int, generator: torch.Generator):
    """(tokens, labels) [size, length]: pairs, then each key queried once at a random later position."""
    tokens = torch.full((size, length), FILLER)
    labels = torch.full((size, length), -100)
    for row in range(size):
        keys = 1 + torch.randperm(KEYS, generator=generator)[:pairs]
        values = 1 + KEYS + torch.randint(0, VALUES, (pairs,), generator=generator)
        tokens[row, 0 : 2 * pairs : 2], tokens[row, 1 : 2 * pairs : 2] = keys, values
        positions = 2 * pairs + torch.randperm(length - 2 * pairs, generator=generator)[:pairs].sort().values
        order = torch.randperm(pairs, generator=generator)
        tokens[row, positions], labels[row, positions] = keys[order], values[order] - (1 + KEYS)
    return tokens, labels


def run_seed(name: str, length: int, pairs: int, seed: int, args: argparse.Namespace) -> dict:
    model, parameters = build(name, vocab_size=VOCAB, num_outputs=VALUES, layers=2, budget=args.budget, seed=seed)
    seconds = train(
        model, lambda generator: batch(args.batch_size, length, pairs, generator), args.steps, args.learning_rate,
        seed=seed,
    )
    score = accuracy(model, batch(args.test_size, length, pairs, torch.Generator().manual_seed(4321)))
    print(f"T={length:4} pairs={pairs:3} {name:9} seed {seed} {parameters:7,} parameters  accuracy {score:.3f}"
          f"  ({seconds:.0f} s)", flush=True)
    return {"parameters": parameters, "accuracy": score, "train_seconds": seconds}


def run(name: str, length: int, pairs: int, args: argparse.Namespace) -> dict:
    return over_seeds([run_seed(name, length, pairs, seed, args) for seed in range(args.seeds)])


def plot(results: dict) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(8, 4))
    grouped_bars(axis, results, CONTENDERS, "accuracy")
    axis.set(ylabel="recall accuracy (mean, std over seeds)", ylim=(0, 1.25),
             title="MQAR, equal parameters and training")
    axis.legend(fontsize=8, ncol=4, loc="upper center")
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--settings", nargs="+", default=["64:4", "128:8", "256:16"], help="length:pairs ...")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. seeds-1 for every contender")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--budget", type=int, default=60_000)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--mamba-max-length", type=int, default=64,
                        help="Mamba's PyTorch scan (the CPU has no Mamba kernels) costs most; longer settings skip it")
    args = parser.parse_args(argv)
    if args.quick:
        args.settings, args.steps, args.test_size, args.budget, args.seeds = ["24:2"], 2, 4, 5_000, 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results = {}
    for setting in args.settings:
        length, pairs = map(int, setting.split(":"))
        names = [name for name in args.contenders if name != "mamba" or length <= args.mamba_max_length]
        results[f"T={length}, {pairs} pairs"] = {name: run(name, length, pairs, args) for name in names}
    publish(args, "mqar", results, plot)
    return results


if __name__ == "__main__":
    main()
