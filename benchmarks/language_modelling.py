"""Language modelling on the King James Bible: validation perplexity of an xLSTM against a Llama and a Mamba
from transformers with about as many parameters, trained on the same tokens with the same recipe.

    python benchmarks/language_modelling.py            # the study (results/language_modelling.json, .png)
    python benchmarks/language_modelling.py --quick    # seconds, a smoke run

Data, tokenizer, xLSTM, Llama and the training recipe are those of examples/train_bible_lm.py (every 20th
verse held out, a 4k byte-level BPE, blocks of 128 tokens, Trainer with AdamW and a cosine schedule); the
Mamba is as deep as the xLSTM, at the width that brings its parameter count closest (its PyTorch scan on
the CPU). Each model trains `seeds` times; the table gives mean and spread of the validation perplexity.
The default run leaves the Mamba out: transformers' PyTorch fallback for its kernels (a Python loop over the
steps) took 11.5 s per training step (16 x 128 tokens, 991k parameters) on 2 CPU cores, where the xLSTM
takes about 0.4 s: 77 minutes per seed. `--contenders xlstm llama mamba` runs it.
"""

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
from training import RESULTS, publish
from transformers import MambaConfig, MambaForCausalLM, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _common import parse_with_quick  # noqa: E402
from train_bible_lm import (  # noqa: E402
    QUICK_DEFAULTS,
    add_training_arguments,
    build_llama,
    build_xlstm,
    count_parameters,
    prepare_data,
    special_token_ids,
    train_and_evaluate,
    unigram_perplexity,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

CONTENDERS = ("xlstm", "llama", "mamba")


def build_mamba(args: argparse.Namespace, tokenizer, num_parameters: int) -> MambaForCausalLM:
    """A `MambaForCausalLM` as deep as the xLSTM, tied embeddings, at the width (a multiple of 8) whose
    parameter count comes closest to `num_parameters`."""
    configs = [
        MambaConfig(
            vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=len(args.layer_types), state_size=16,
            tie_word_embeddings=True, use_cache=False, **special_token_ids(tokenizer),
        )
        for width in range(8, 4 * args.hidden_size + 1, 8)
    ]
    config = min(configs, key=lambda candidate: abs(count_parameters(MambaForCausalLM, candidate) - num_parameters))
    set_seed(args.seed)
    return MambaForCausalLM(config)


def build(name: str, args: argparse.Namespace, tokenizer):
    xlstm = build_xlstm(args, tokenizer)
    if name == "xlstm":
        return xlstm
    return (build_llama if name == "llama" else build_mamba)(args, tokenizer, xlstm.num_parameters())


def run(name: str, data: tuple, args: argparse.Namespace) -> dict:
    tokenizer, train_blocks, validation_blocks = data
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        seeded = argparse.Namespace(**{**vars(args), "seed": seed})
        result = train_and_evaluate(build(name, seeded, tokenizer), train_blocks, validation_blocks, seeded)
        print(f"  {name:6} seed {seed}: {result['parameters']:,} parameters, validation perplexity "
              f"{result['validation_perplexity']:.1f} ({result['train_time_s']:.0f} s)")
        runs.append(result)
    perplexities = [result["validation_perplexity"] for result in runs]
    return {"parameters": runs[0]["parameters"], "validation_perplexity": float(np.mean(perplexities)),
            "validation_perplexity_std": float(np.std(perplexities)), "runs": runs}


def plot(results: dict) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in [name for name in CONTENDERS if name in results]:
        steps, losses = zip(*results[name]["runs"][0]["loss_curve"])
        axis.plot(steps, losses, label=f"{name} (validation perplexity {results[name]['validation_perplexity']:.1f})")
    axis.set(xlabel="step", ylabel="training loss", title="King James Bible, same tokens seen (seed 0)")
    axis.legend(fontsize=8)
    return figure


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser, str(RESULTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=["xlstm", "llama"])
    args = parse_with_quick(parser, argv, {**QUICK_DEFAULTS, "max_verses": 1000, "seeds": 1,
                                           "contenders": list(CONTENDERS)})
    data = prepare_data(args)
    results = {name: run(name, data, args) for name in args.contenders}
    results["unigram"] = {"validation_perplexity": unigram_perplexity(data[1], data[2], len(data[0]))}
    publish(args, "language_modelling", results, plot)
    return results


if __name__ == "__main__":
    main()
