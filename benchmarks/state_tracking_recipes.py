"""State tracking, the recipe: what makes parity and sums modulo 3 and 5 generalise from short to long
sequences in sLSTM stacks (xLSTM[0:1]) of 1 and 2 blocks, ours ("ours") and the official `xlstm` package's
("official", the control: the same recipe, data and seeds), varying one factor of a base recipe at a time.

    python benchmarks/state_tracking_recipes.py           # results/state_tracking_recipes.json, .png
    python benchmarks/state_tracking_recipes.py --quick   # seconds, a smoke run
    python benchmarks/state_tracking_recipes.py --tasks parity --implementations ours --name part_a  # a part
    python benchmarks/state_tracking_recipes.py --combine part_a part_b   # parts (run apart) into one JSON

Base recipe (small and short, to afford seeds): sLSTM blocks of width 32, 4 heads, causal conv of width 4,
the gated feed-forward after each, the official initialisation (forget bias by the block-dependent power
law); AdamW at 3e-3, weight decay 0.01, warm-up 10 % and cosine decay, gradients clipped at 1
(`training.py`); 1,000 steps of 64 sequences (one length per batch, drawn from 2..40), every position
supervised; scored on the last position of held-out sequences of 40, 64, 128 and 256 tokens. A factor
changes one of these (FACTORS); "reproduction" combines the settings of the NX-AI formal-language
configuration as published with a later reproduction (see docs/results.md). "lstm" (torch.nn.LSTM of the
same width and depth) is the reference for the factors of the training recipe.

Before training, `equivalence` checks, on the base model, that the official stack and ours converted from
it give the same loss and gradients, and that a fresh model of each starts from the same distribution of
weights (the deterministic tensors equal, the random ones with the same spread), so that differences in
training are of recipes, not of code.
"""

import copy
import json

import matplotlib
import numpy as np
import torch
from contenders import build, ours_from_official
from state_tracking import MAX_TRAIN_LENGTH, TASKS, TEST_LENGTHS, batch, test_accuracies
from training import grouped_bars, over_seeds, publish, study_parser, token_loss, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

IMPLEMENTATIONS = {"ours": "xlstm-s", "official": "official-s", "lstm": "lstm"}
MODEL_KEYS = ("bias_init", "conv", "ffn", "slstm_heads")  # what the LSTM reference does not have
FACTORS = {
    "base": {},
    "lr 1e-3": {"learning_rate": 1e-3},
    "lr 1e-2": {"learning_rate": 1e-2},
    "3x steps": {"steps_factor": 3},
    "curriculum": {"curriculum": True},
    "forget bias 3..6": {"bias_init": "small_init"},
    "biases uniform": {"bias_init": "standard"},
    "no conv": {"conv": 0},
    "no feed-forward": {"ffn": False},
    "1 head": {"slstm_heads": 1},
    "last position only": {"last_only": True},
    "reproduction": {"conv": 0, "learning_rate": 1e-3, "weight_decay": 0.1, "last_only": True},
}
SOLVED = 0.95  # accuracy at the longest test length that counts as solved


def equivalence(width: int = 32) -> dict:
    """For 1 and 2 sLSTM blocks and the m-s stack: |loss difference| and the largest gradient difference
    (relative to the largest gradient) between an official model and ours converted from it; and between a
    fresh official model and a fresh one of ours: the largest difference of the deterministic tensors and
    the largest relative difference of the spread of the random ones."""
    from xlstm_hf.checkpoint_mapping import neurips_stack_weights

    def mapped(official, values):  # our state dict of the official stack with its parameters set to `values`
        twin = copy.deepcopy(official.stack)
        with torch.no_grad():
            for parameter, value in zip(twin.parameters(), values):
                parameter.copy_(value)
        return {key: value.detach() for key, value in neurips_stack_weights(twin, prefix="backbone.").items()}

    report = {}
    for name, layers in (("official-s", 1), ("official-s", 2), ("official-ms", 2)):
        official, _ = build(name, 2, 2, layers, 0, seed=0, width=width)
        ours = ours_from_official(official, 2)
        tokens, labels = batch(2, 16, MAX_TRAIN_LENGTH, torch.Generator().manual_seed(0))
        official_loss, our_loss = token_loss(official, (tokens, labels)), token_loss(ours, (tokens, labels))
        official_loss.backward()
        our_loss.backward()
        zeros = [torch.zeros_like(p) for p in official.stack.parameters()]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in official.stack.parameters()]
        official_grads = {key: value - mapped(official, zeros)[key] for key, value in mapped(official, grads).items()}
        official_grads |= {"backbone.embeddings.weight": official.embedding.weight.grad,
                           "classifier.weight": official.head.weight.grad, "classifier.bias": official.head.bias.grad}
        our_grads = dict(ours.model.named_parameters())
        scale = max(grad.abs().max().item() for grad in official_grads.values())
        gradient_difference = max((our_grads[key].grad - grad).abs().max().item()
                                  for key, grad in official_grads.items())
        # fresh models of each package from different seeds: the tensors that two seeds of the official package
        # draw alike (deterministic) equal in ours; the others (of 256 elements or more: sampling noise of
        # their spread about 5 %) with the same spread
        fresh = [mapped(official, [p.detach() for p in build(name, 2, 2, layers, 0, seed=seed, width=width)[0]
                                   .stack.parameters()]) for seed in (1, 3)]
        fresh_ours = dict(build(name.replace("official", "xlstm"), 2, 2, layers, 0, seed=2, width=width)[0]
                          .model.backbone.named_parameters(prefix="backbone"))
        deterministic, spread = 0.0, 0.0
        for key, value in fresh[0].items():
            if torch.equal(value, fresh[1][key]):
                deterministic = max(deterministic, (fresh_ours[key] - value).abs().max().item())
            elif value.numel() >= 256:
                spread = max(spread, abs(fresh_ours[key].std().item() / value.std().item() - 1))
        report[f"{name}, {layers} block(s)"] = {
            "loss_official": official_loss.item(), "loss_ours": our_loss.item(),
            "gradient_difference_relative": gradient_difference / scale,
            "fresh_deterministic_difference": deterministic, "fresh_spread_relative_difference": spread,
        }
        print(f"equivalence {name}, {layers} block(s): " + ", ".join(
            f"{key} {value:.3g}" for key, value in report[f"{name}, {layers} block(s)"].items()), flush=True)
    return report


def run_seed(task: str, implementation: str, layers: int, factor: dict, seed: int, args) -> dict:
    modulus = TASKS[task]
    recipe = {key: value for key, value in factor.items() if key in MODEL_KEYS}
    steps = args.steps * factor.get("steps_factor", 1)
    model, parameters = build(IMPLEMENTATIONS[implementation], modulus, modulus, layers, 0, seed=seed,
                              width=args.width, **recipe)
    done, losses = [0], []

    def next_batch(generator):
        longest = MAX_TRAIN_LENGTH
        if factor.get("curriculum"):  # the longest length grows from 5 to 40 over the first half
            longest = min(MAX_TRAIN_LENGTH, 5 + int((MAX_TRAIN_LENGTH - 5) * done[0] / (steps / 2)))
        done[0] += 1
        length = int(torch.randint(2, longest + 1, (1,), generator=generator))
        return batch(modulus, args.batch_size, length, generator, last_only=factor.get("last_only", False))

    def loss_of(model, batch):
        loss = token_loss(model, batch)
        losses.append(loss.item())
        return loss

    seconds = train(model, next_batch, steps, factor.get("learning_rate", args.learning_rate), seed=seed,
                    loss_of=loss_of, weight_decay=factor.get("weight_decay", 0.01))
    by_length = test_accuracies(model, modulus, args.test_size)
    return {"parameters": parameters, "train_seconds": seconds, "final_train_loss": float(np.mean(losses[-50:])),
            "accuracy_by_length": by_length, "solved": float(by_length[max(TEST_LENGTHS)] >= SOLVED)}


def run(task: str, implementation: str, layers: int, factor_name: str, args) -> dict:
    result = over_seeds([run_seed(task, implementation, layers, FACTORS[factor_name], seed, args)
                         for seed in range(args.seeds)])
    by_length = result["accuracy_by_length"]
    print(f"{task:10} {implementation:8} {layers} block(s) {factor_name:20} "
          + "  ".join(f"T={length}: {by_length[length]:.2f}+-{result['accuracy_by_length_std'][length]:.2f}"
                      for length in by_length)
          + f"  solved {result['solved'] * args.seeds:.0f}/{args.seeds}, train loss {result['final_train_loss']:.3f}"
          f" ({result['train_seconds']:.0f} s a seed)", flush=True)
    return result


def at_length(by_length: dict, length: int) -> float:
    """The value at `length` of a dict by length, fresh (int keys) or read back from JSON (str keys)."""
    return by_length[length] if length in by_length else by_length[str(length)]


def plot(results: dict) -> plt.Figure:
    tasks = list(results)
    figure, axes = plt.subplots(len(tasks), 1, figsize=(12, 3.6 * len(tasks)), squeeze=False)
    longest = max(TEST_LENGTHS)
    for axis, task in zip(axes[:, 0], tasks):
        series = list(results[task])
        factors = list(dict.fromkeys(factor for runs in results[task].values() for factor in runs))
        bars = {factor: {name: {"accuracy": at_length(runs[factor]["accuracy_by_length"], longest),
                                "accuracy_std": at_length(runs[factor]["accuracy_by_length_std"], longest)}
                         for name, runs in results[task].items() if factor in runs} for factor in factors}
        grouped_bars(axis, bars, series, "accuracy")
        axis.axhline(1 / TASKS[task], color="gray", linestyle="--", linewidth=0.8)
        axis.set(ylabel=f"accuracy at T={longest}", ylim=(0, 1.15), title=f"{task}: trained on 2..{MAX_TRAIN_LENGTH}")
        axis.tick_params(axis="x", labelsize=7, rotation=20)
        axis.legend(fontsize=7, ncol=len(series), loc="upper center")
    return figure


def combine(args) -> dict:
    """One JSON and plot (--name) from the parts named by --combine: their results merged by task, series
    and factor, the settings of each part kept."""
    parts = {part: json.loads((args.output_dir / f"{part}.json").read_text()) for part in args.combine}
    results = {}
    for document in parts.values():
        for task, series in document["results"].items():
            for name, runs in series.items():
                results.setdefault(task, {}).setdefault(name, {}).update(runs)
    args.parts = {part: document["settings"] for part, document in parts.items()}
    publish(args, args.name, results, plot, next(iter(parts.values())).get("checks"))
    return results


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--implementations", nargs="+", default=["ours", "official"], choices=list(IMPLEMENTATIONS))
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--factors", nargs="+", default=list(FACTORS), choices=list(FACTORS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--name", default="state_tracking_recipes", help="of the JSON and plot")
    parser.add_argument("--combine", nargs="+", metavar="PART",
                        help="merge the results of these JSONs in --output-dir (parts run apart) instead of running")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args)
    if args.quick:
        args.tasks, args.factors, args.depths, args.seeds = ["parity"], ["base", "curriculum", "no conv"], [1], 2
        args.steps, args.test_size, args.width = 4, 8, 16
    torch.set_num_threads(1)
    checks, results = {"equivalence": equivalence(args.width)}, {}
    for task in args.tasks:
        results[task] = {}
        for implementation in args.implementations:
            for layers in args.depths:
                factors = [name for name in args.factors
                           if implementation != "lstm" or not set(FACTORS[name]) & set(MODEL_KEYS)]
                results[task][f"{implementation}, {layers} block(s)"] = {
                    name: run(task, implementation, layers, name, args) for name in factors}
    publish(args, args.name, results, plot, checks)
    return results


if __name__ == "__main__":
    main()
