"""Packed against padded training on real variable-length data: useful (non-pad) tokens per second, training
time to a fixed validation loss and the final validation loss, for the Bible LM and the punctuation tagger,
each trained by Trainer in padded batches (random order), padded batches grouped by length, and packed rows.

    python benchmarks/packing.py             # the study (results/packing.json, .png)
    python benchmarks/packing.py --seed 1    # again from other weights and batches (results/packing_seed1.*)
    python benchmarks/packing.py --quick     # seconds, a smoke run

The two tasks:

* "bible lm": the causal xLSTM of examples/train_bible_lm.py (blocks m-s-m-m), but every verse its own
  sequence `<s> text </s>` (4 to 118 tokens, 34 on average), not a stream cut into blocks;
* "punctuation tagger": the bidirectional tagger of examples/tag_punctuation.py (blocks m-s, both directions).

The three contenders of a task get the same model (same initial weights), data, seed, recipe (AdamW, cosine
schedule, Trainer's defaults otherwise), the same number of verses per step and the same number of steps:

* "padded": `DataCollatorForLanguageModeling` / `DataCollatorForTokenClassification` pad each batch to its
  longest verse; Trainer's random sampler;
* "padded, grouped by length": the same, with `train_sampling_strategy="group_by_length"` (the former
  `group_by_length=True`): mega-batches of 50 batches sorted by length, so little padding, but batches of
  similar verses;
* "packed": `DataCollatorWithFlattening`: each batch one row of its verses back to back, `position_ids`
  restarting at 0 where each begins; no padding.

Same verses per step, not the same token budget: that is what `DataCollatorWithFlattening` does under
Trainer (it flattens whatever batch the sampler gives), and it makes "padded" and "packed" see the same
verses in the same order (the same sampler and seed) with the same loss normalisation (Trainer's
`num_items_in_batch`, the labelled tokens of the batch), so their training losses agree step by step (the
study records both, and how far apart they are) and every difference in time is throughput.

Machine noise: the contenders train in threads that take turns, one optimisation step each (a baton passed
round: padded, grouped, packed, padded, ...), so a slow spell of a shared machine hits all three alike. Each
contender's clock runs only during its own turns, from fetching and collating its batch to the end of its
optimiser step; the validation loss, measured every `--eval-every` steps on the same held-out verses in
padded batches for every contender, is off the clock. Time to a target: the training seconds at the first
evaluation whose loss is at most the target, plus 0.1 % (so that float rounding between packed and padded does
not decide); two targets: the best loss of the padded run, and the worst of the contenders' best losses (one
that every contender reaches).
"""

import argparse
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from training import publish, study_parser
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForTokenClassification,
    DataCollatorWithFlattening,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import tag_punctuation  # noqa: E402
from train_bible_lm import build_xlstm, load_kjv_verses, split_verses, train_tokenizer  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

TASKS = ("bible lm", "punctuation tagger")
CONTENDERS = ("padded", "padded, grouped by length", "packed")
TARGET_SLACK = 1e-3  # relative: see the docstring
QUICK = {"max_verses": 600, "vocab_size": 512, "hidden_size": 32, "steps": 6, "eval_every": 3, "eval_verses": 16,
         "batch_size": 8}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# ---- the two tasks: data, model, collators, recipe ----------------------------------------------------------


class Task:
    """What a task gives the study: training and validation datasets, a fresh model (same weights each
    call), the padded collator, the training arguments, and the summed validation loss of a padded batch."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        if name == "bible lm":
            train_verses, validation_verses = split_verses(load_kjv_verses()[: args.max_verses])
            self.tokenizer = train_tokenizer(train_verses, args.vocab_size)

            def encode(verses):  # `<s> text </s>` (the tokenizer puts the `<s>`)
                return Dataset.from_dict({"input_ids": self.tokenizer([v + self.tokenizer.eos_token for v in verses])
                                          ["input_ids"]})

            self.train_data, validation = encode(train_verses), encode(validation_verses)
            self.padded_collator = DataCollatorForLanguageModeling(self.tokenizer, mlm=False)
            self.model_args = argparse.Namespace(hidden_size=args.hidden_size, num_heads=4, seed=args.seed,
                                                 layer_types=["mlstm", "slstm", "mlstm", "mlstm"])
            self.recipe = {"learning_rate": 3e-3, "warmup_steps": 0.1, "weight_decay": 0.1}
        else:
            train_verses, validation_verses = tag_punctuation.punctuation_verses(args.max_verses)
            self.tokenizer = train_tokenizer([" ".join(words) for words, _ in train_verses], args.vocab_size)
            self.train_data = tag_punctuation.tokenized(train_verses, self.tokenizer)
            validation = tag_punctuation.tokenized(validation_verses, self.tokenizer)
            self.padded_collator = DataCollatorForTokenClassification(self.tokenizer)
            self.model_args = argparse.Namespace(hidden_size=args.hidden_size, seed=args.seed)
            self.recipe = {"learning_rate": 3e-3, "warmup_steps": 0.05, "weight_decay": 0.01}
        picked = np.linspace(0, len(validation) - 1, min(args.eval_verses, len(validation))).astype(int)
        self.validation = list(validation.select(picked))  # [{"input_ids": [...], ...}], as collators take them

    def model(self):
        if self.name == "bible lm":
            return build_xlstm(self.model_args, self.tokenizer)
        return tag_punctuation.build_model(self.model_args, self.tokenizer)

    def training_arguments(self, output_dir: str, grouped: bool) -> TrainingArguments:
        return TrainingArguments(
            output_dir=output_dir,  # nothing is written
            max_steps=self.args.steps,
            per_device_train_batch_size=self.args.batch_size,
            lr_scheduler_type="cosine",
            max_grad_norm=1.0,
            train_sampling_strategy="group_by_length" if grouped else "random",
            logging_strategy="no",
            eval_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            seed=self.args.seed,
            use_cpu=True,
            report_to=[],
            **self.recipe,
        )

    @torch.no_grad()
    def validation_loss(self, model) -> float:
        """Mean cross entropy per target token of the validation verses, in padded batches of 32."""
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(self.validation), 32):
            batch = self.padded_collator(self.validation[start:start + 32])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            if self.name == "bible lm":
                logits, labels = logits[:, :-1], labels[:, 1:]
            total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum").item()
            count += int((labels != -100).sum())
        model.train()
        return total / count


# ---- taking turns -----------------------------------------------------------------------------------------


class Baton:
    """One step at a time, round the contenders still training."""

    def __init__(self, names):
        self.order, self.turn = list(names), 0
        self.condition = threading.Condition()

    def wait_for(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.order[self.turn] == name)

    def pass_on(self, name: str, retire: bool = False) -> None:
        """End `name`'s turn (if it is its turn: a contender that retires after its last step is not
        holding the baton, and the one holding it keeps it)."""
        with self.condition:
            holder, index = self.order[self.turn], self.order.index(name)
            if retire:
                self.order.pop(index)
            if not self.order:
                self.turn = 0
            elif holder != name:
                self.turn = self.order.index(holder)
            else:
                self.turn = (index if retire else index + 1) % len(self.order)
            self.condition.notify_all()


class Contender(TrainerCallback):
    """A contender's clock, token counts, validation curve and step losses; it holds the baton from the
    fetch of its batch (the collator is the first thing of a step that it can see) to the end of its step."""

    def __init__(self, name: str, task: Task, baton: Baton, collator):
        self.name, self.task, self.baton, self.collator = name, task, baton, collator
        self.holding, self.turn_start = False, 0.0
        self.clock, self.step_seconds, self.useful, self.computed = 0.0, [], 0, 0
        self.curve, self.losses, self.items, self.error = [], [], [], None

    def take(self) -> None:
        if not self.holding:
            self.baton.wait_for(self.name)
            self.holding, self.turn_start = True, time.perf_counter()

    def collate(self, features):
        self.take()
        batch = self.collator(features)
        self.useful += sum(len(feature["input_ids"]) for feature in features)
        self.computed += batch["input_ids"].numel()
        return batch

    def on_train_begin(self, args, state, control, **kwargs):
        self.turn_start = time.perf_counter()  # the trainer's set-up is off the clock

    def on_step_begin(self, args, state, control, **kwargs):
        self.take()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        seconds = time.perf_counter() - self.turn_start
        self.clock += seconds
        self.step_seconds.append(seconds)
        if state.global_step % self.task.args.eval_every == 0 or state.global_step == args.max_steps:
            self.curve.append((state.global_step, self.clock, self.task.validation_loss(model)))
        self.holding = False
        self.baton.pass_on(self.name)


class RecordingTrainer(Trainer):
    """Trainer that keeps each step's loss (as it normalised it) and `num_items_in_batch`."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            contender = self.contender
            contender.losses.append(float((result[0] if return_outputs else result).detach()))
            contender.items.append(None if num_items_in_batch is None else int(num_items_in_batch))
        return result


def warm_up(task: Task) -> None:
    """One training step of a throwaway model on a padded and on a packed batch: the compiled kernels load
    and the allocator warms before any clock runs."""
    model = task.model()
    features = [task.train_data[i] for i in range(min(len(task.train_data), task.args.batch_size))]
    for collator in (task.padded_collator, DataCollatorWithFlattening()):
        batch = {key: value for key, value in collator(features).items()}
        model(**batch).loss.backward()


def run_task(task: Task, args: argparse.Namespace, scratch: str) -> dict:
    """Train every contender, taking turns; `scratch` is the trainers' output folder (nothing is saved)."""
    warm_up(task)
    baton = Baton(args.contenders)
    contenders, threads = {}, []
    for name in args.contenders:
        padded = name != "packed"
        contender = Contender(name, task, baton, task.padded_collator if padded else DataCollatorWithFlattening())
        trainer = RecordingTrainer(model=task.model(), args=task.training_arguments(scratch, name.endswith("length")),
                                   train_dataset=task.train_data, data_collator=contender.collate,
                                   processing_class=task.tokenizer, callbacks=[contender])
        trainer.contender = contender
        trainer.remove_callback(PrinterCallback)
        contenders[name] = contender

        def train(trainer=trainer, contender=contender):
            try:
                contender.take()  # the set-up (model wrapping, sampler, the length scan of grouping) one at a time
                trainer.train()
            except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
                contender.error = error
            finally:
                baton.pass_on(contender.name, retire=True)

        threads.append(threading.Thread(target=train, name=name))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for contender in contenders.values():
        if contender.error is not None:
            raise contender.error
    return summarise(contenders)


def first_reaching(curve: list, target: float) -> tuple[int | None, float | None]:
    """(step, training seconds) of the first evaluation at or below `target`, or (None, None)."""
    return next(((step, clock) for step, clock, loss in curve if loss <= target), (None, None))


def summarise(contenders: dict) -> dict:
    """Per contender: throughput, padding, losses, and the time to two targets: the best validation loss
    of the padded run, and the worst of the contenders' best losses (one every contender reaches)."""
    padded = contenders["padded"] if "padded" in contenders else next(iter(contenders.values()))
    target = min(loss for _, _, loss in padded.curve) * (1 + TARGET_SLACK)
    common_target = max(min(loss for _, _, loss in c.curve) for c in contenders.values()) * (1 + TARGET_SLACK)
    results = {}
    for name, contender in contenders.items():
        step, seconds = first_reaching(contender.curve, target)
        common_step, common_seconds = first_reaching(contender.curve, common_target)
        results[name] = {
            "useful_tokens_per_s": contender.useful / contender.clock,
            "computed_tokens_per_s": contender.computed / contender.clock,
            "padding_share": 1 - contender.useful / contender.computed,
            "useful_tokens": contender.useful,
            "train_s": contender.clock,
            "median_step_s": float(np.median(contender.step_seconds)),
            "final_validation_loss": contender.curve[-1][2],
            "best_validation_loss": min(loss for _, _, loss in contender.curve),
            "target_validation_loss": target,
            "time_to_target_s": seconds,
            "step_to_target": step,
            "common_target_validation_loss": common_target,
            "time_to_common_target_s": common_seconds,
            "step_to_common_target": common_step,
            "validation_curve": contender.curve,
            "train_losses": contender.losses,
            "num_items_in_batch": contender.items,
        }
    base = results[padded.name]
    for name, result in results.items():
        result["useful_tokens_per_s_vs_padded"] = result["useful_tokens_per_s"] / base["useful_tokens_per_s"]
        for key in ("time_to_target", "time_to_common_target"):
            mine, theirs = result[f"{key}_s"], base[f"{key}_s"]
            result[f"{key}_vs_padded"] = mine / theirs if mine is not None and theirs else None
        if name == "packed" and padded.name == "padded":
            differences = np.abs(np.array(result["train_losses"]) - np.array(base["train_losses"]))
            result["train_loss_vs_padded_max_abs_diff"] = float(differences.max())
            result["num_items_in_batch_as_padded"] = result["num_items_in_batch"] == base["num_items_in_batch"]
    return results


# ---- report -------------------------------------------------------------------------------------------------


def plot(results: dict) -> plt.Figure:
    figure, axes = plt.subplots(len(results), 2, figsize=(11, 3.8 * len(results)), squeeze=False)
    for (task, contenders), (curve_axis, bar_axis) in zip(results.items(), axes):
        for name, result in contenders.items():
            _, clocks, losses = zip(*result["validation_curve"])
            curve_axis.plot(clocks, losses, marker=".", label=name)
        first = next(iter(contenders.values()))
        curve_axis.axhline(first["target_validation_loss"], color="grey", linestyle=":", label="best of padded")
        curve_axis.axhline(first["common_target_validation_loss"], color="grey", linestyle="--",
                           label="common target (worst best)")
        curve_axis.set(xlabel="training seconds (own turns only)", ylabel="validation loss", title=task)
        curve_axis.legend(fontsize=8)
        names = list(contenders)
        bars = bar_axis.bar(range(len(names)), [contenders[n]["useful_tokens_per_s"] for n in names],
                            color=[f"C{i}" for i in range(len(names))])
        bar_axis.bar_label(bars, labels=[f"x{contenders[n]['useful_tokens_per_s_vs_padded']:.2f}" for n in names])
        bar_axis.set_xticks(range(len(names)), [n.replace(", ", ",\n") for n in names])
        bar_axis.set(ylabel="useful tokens / s of training", title=f"{task}: throughput (x padded)")
        bar_axis.margins(y=0.12)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--max-verses", type=int, default=None, help="use only the first this many verses")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps per contender")
    parser.add_argument("--batch-size", type=int, default=32, help="verses per step")
    parser.add_argument("--eval-every", type=int, default=20, help="steps between validation losses")
    parser.add_argument("--eval-verses", type=int, default=256, help="held-out verses of the validation loss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    args.cpu, args.torch_threads = cpu_model(), torch.get_num_threads()
    print(f"CPU: {args.cpu}, {args.torch_threads} torch threads")
    results = {}
    for task_name in args.tasks:
        task = Task(task_name, args)
        print(f"{task_name}: {len(task.train_data)} training verses, {len(task.validation)} validation verses")
        with tempfile.TemporaryDirectory() as scratch:
            results[task_name] = run_task(task, args, scratch)
        for name, result in results[task_name].items():
            reached, common = result["time_to_target_s"], result["time_to_common_target_s"]
            print(f"  {name:26} {result['useful_tokens_per_s']:7.0f} useful tokens/s "
                  f"(x{result['useful_tokens_per_s_vs_padded']:.2f}), padding {result['padding_share']:.0%}, "
                  f"{result['train_s']:.0f} s, to the padded best {'-' if reached is None else f'{reached:.0f} s'}, "
                  f"to the common target {common:.0f} s, final validation loss {result['final_validation_loss']:.4f}")
        packed = results[task_name].get("packed", {})
        if "train_loss_vs_padded_max_abs_diff" in packed:
            print(f"  packed vs padded training loss, largest difference over {args.steps} steps: "
                  f"{packed['train_loss_vs_padded_max_abs_diff']:.2e}; same num_items_in_batch: "
                  f"{packed['num_items_in_batch_as_padded']}")
    publish(args, "packing" if args.seed == 0 else f"packing_seed{args.seed}", results, plot)
    return results


if __name__ == "__main__":
    main()
