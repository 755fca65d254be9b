"""Training at scale: Trainer for every head (evaluation, metrics, gradient accumulation), several
processes (DDP through torchrun and accelerate, FSDP2), activation checkpointing, bf16 autocast, resuming,
LoRA adapters. Tiny models with an mLSTM and an sLSTM block; SGD where updates are compared, so that
differences in the weights stay as small as the differences in the gradients.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.utils.dataclasses import get_module_class_from_name
from safetensors.torch import load_file
from torch.testing import assert_close
from torch.utils._pytree import tree_leaves
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer
from transformers.distributed import DistributedConfig

from xlstm_hf import (
    XLSTMConfig,
    XLSTMForCausalLM,
    XLSTMForSeq2SeqLM,
    XLSTMForSequenceClassification,
    XLSTMForTimeSeriesPrediction,
    XLSTMForTokenClassification,
)
from xlstm_hf.modeling_xlstm import XLSTMBlock

EXAMPLES = Path(__file__).parents[1] / "examples"
VOCAB, LENGTH, CONTEXT, HORIZON, CHANNELS = 32, 12, 16, 4, 2


def tiny_config(**overrides) -> XLSTMConfig:
    kwargs = {
        "vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_heads": 2, "chunk_size": 4,
        "layer_types": ["mlstm", "slstm"], "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        "decoder_start_token_id": 1, **overrides,
    }
    return XLSTMConfig(**kwargs)


def masked_labels(ids: torch.Tensor, index: int) -> torch.Tensor:
    """`ids` with its first `index % 5` positions ignored (-100): examples count different numbers of tokens."""
    labels = ids.clone()
    labels[: index % 5] = -100
    return labels


def lm_examples(generator, index):
    ids = torch.randint(3, VOCAB, (LENGTH,), generator=generator)
    return {"input_ids": ids, "labels": masked_labels(ids, index)}


def seq2seq_examples(generator, index):
    source = torch.randint(3, VOCAB, (LENGTH,), generator=generator)
    return {"input_ids": source, "labels": masked_labels(source.flip(0), index)}


def sequence_examples(generator, index):
    return {"input_ids": torch.randint(3, VOCAB, (LENGTH,), generator=generator), "labels": torch.tensor(index % 3)}


def token_examples(generator, index):
    ids = torch.randint(3, VOCAB, (LENGTH,), generator=generator)
    return {"input_ids": ids, "labels": masked_labels(ids % 3, index)}


def series_examples(generator, index):
    series = torch.randn(CONTEXT + HORIZON, CHANNELS, generator=generator).cumsum(0)
    return {"past_values": series[:CONTEXT], "future_values": series[CONTEXT:]}


def accuracy(prediction, shift: bool = False) -> dict[str, float]:
    """Accuracy of the arg-max over the labelled positions; `shift`: of the next token (causal LM)."""
    logits, labels = prediction.predictions, prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    labelled = labels != -100
    return {"accuracy": float((logits.argmax(-1) == labels)[labelled].mean())}


def next_token_accuracy(prediction) -> dict[str, float]:
    return accuracy(prediction, shift=True)


def mean_squared_error(prediction) -> dict[str, float]:
    forecasts = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"mse": float(np.mean((forecasts - prediction.label_ids) ** 2))}


# head: (model class, config overrides, examples, compute_metrics)
HEADS = {
    "causal_lm": (XLSTMForCausalLM, {}, lm_examples, next_token_accuracy),
    "seq2seq": (XLSTMForSeq2SeqLM, {}, seq2seq_examples, accuracy),
    "sequence_classification": (XLSTMForSequenceClassification, {"num_labels": 3}, sequence_examples, accuracy),
    "token_classification": (XLSTMForTokenClassification, {"num_labels": 3}, token_examples, accuracy),
    "time_series": (
        XLSTMForTimeSeriesPrediction,
        {"context_length": CONTEXT, "prediction_length": HORIZON, "patch_length": 4, "patch_stride": 4,
         "num_input_channels": CHANNELS, "loss": "mse"},
        series_examples,
        mean_squared_error,
    ),
}


def make_head(head: str, **overrides):
    model_class, config_overrides, _, _ = HEADS[head]
    torch.manual_seed(0)
    return model_class(tiny_config(**config_overrides, **overrides))


def dataset(head: str, size: int = 16) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [HEADS[head][2](generator, index) for index in range(size)]


def make_trainer(head: str, model, output_dir, **arguments) -> Trainer:
    """Trainer (Seq2SeqTrainer for seq2seq) with SGD at a constant rate, the examples in order."""
    defaults = {
        "output_dir": str(output_dir), "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
        "max_steps": 1, "learning_rate": 0.1, "optim": "sgd", "lr_scheduler_type": "constant",
        "train_sampling_strategy": "sequential", "use_cpu": True, "report_to": [], "save_strategy": "no",
        "disable_tqdm": True, "seed": 0,
        "label_names": ["future_values"] if head == "time_series" else ["labels"],
    }
    args = Seq2SeqTrainingArguments(**{**defaults, **arguments})
    trainer_class = Seq2SeqTrainer if head == "seq2seq" else Trainer
    return trainer_class(
        model=model, args=args, train_dataset=dataset(head), eval_dataset=dataset(head), compute_metrics=HEADS[head][3]
    )


def trained_weights(head: str, tmp_path, model_overrides=None, **arguments) -> dict[str, torch.Tensor]:
    """The weights after training a fresh `head` model with `make_trainer(..., **arguments)`."""
    trainer = make_trainer(head, make_head(head, **(model_overrides or {})), tmp_path, **arguments)
    trainer.train()
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def assert_same_weights(actual: dict, expected: dict, rtol=1e-5, atol=1e-6):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=name)


# ---- Trainer for every head -------------------------------------------------------------------------


@pytest.mark.parametrize("head", list(HEADS))
def test_trainer_evaluates_every_head_with_metrics(head, tmp_path):
    trainer = make_trainer(head, make_head(head), tmp_path)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    metric = "eval_mse" if head == "time_series" else "eval_accuracy"
    assert np.isfinite(before["eval_loss"]) and np.isfinite(after["eval_loss"])
    assert metric in before and np.isfinite(after[metric])
    assert after["eval_loss"] != before["eval_loss"]  # the step changed the model


@pytest.mark.parametrize("head", list(HEADS))
def test_gradient_accumulation_gives_the_update_of_the_larger_batch(head, tmp_path):
    """Two micro-batches of 4 with accumulation make the same step as one batch of 8, also where the
    micro-batches hold different numbers of labelled tokens (the loss is normalised over the whole batch)."""
    whole = trained_weights(head, tmp_path, per_device_train_batch_size=8)
    accumulated = trained_weights(head, tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    one_micro_batch = trained_weights(head, tmp_path, per_device_train_batch_size=4)
    assert_same_weights(accumulated, whole)
    with pytest.raises(AssertionError):  # the test can tell batches apart
        assert_same_weights(one_micro_batch, whole)


# ---- several processes -----------------------------------------------------------------------------


def run_example(launcher: list[str], output_dir: Path, *flags: str) -> dict[str, torch.Tensor]:
    """Run examples/train_distributed.py (a tiny model, SGD) under `launcher`; its saved weights."""
    command = [*launcher, str(EXAMPLES / "train_distributed.py"), "--quick", "--use-cpu", "--optim", "sgd",
               "--learning-rate", "0.5", "--output-dir", str(output_dir), *flags]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=EXAMPLES, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "RESULT" in result.stdout
    return load_file(output_dir / "model.safetensors")


@pytest.fixture(scope="module")
def one_process_weights(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The example in one process, 4 sequences per step."""
    return run_example([sys.executable], tmp_path_factory.mktemp("one"), "--batch-size", "4")


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port()]


def accelerate_launch() -> list[str]:
    config = EXAMPLES / "accelerate" / "cpu_2_processes.yaml"
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--main_process_port", free_port()]


@pytest.mark.parametrize("launcher", [torchrun, accelerate_launch])
def test_two_processes_train_like_one_over_the_same_global_batch(launcher, one_process_weights, tmp_path):
    """DDP over gloo: 2 processes of 2 sequences each end with the weights of 1 process of 4."""
    two = run_example(launcher(), tmp_path, "--batch-size", "2")
    assert json.loads((tmp_path / "metrics.json").read_text())["processes"] == 2
    assert_same_weights(two, one_process_weights)


def test_fsdp2_sharding_trains_like_one_process():
    """transformers' FSDP2 (`from_pretrained(..., distributed_config=...)`) in 2 CPU processes over gloo:
    a shard group per block, and the same weights after 3 steps as one process over the whole batch."""
    worker = Path(__file__).parent / "fsdp_worker.py"
    command = [*torchrun(), str(worker)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "FSDP2 matches one process" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("head", list(HEADS))
def test_fsdp_plans_shard_every_block(head):
    model = make_head(head)
    _, _, plan = model._resolve_parallel_plans(DistributedConfig(fsdp_size=2))
    blocks = [name for name, module in model.named_modules() if isinstance(module, XLSTMBlock)]
    assert blocks and set(blocks) <= plan.keys()
    assert all(style in ("free_full_weight", "keep_full_weight") for style in plan.values())


@pytest.mark.parametrize("head", list(HEADS))
def test_fsdp_auto_wrap_finds_the_block_class(head):
    """accelerate's transformer-based auto-wrap reads `_no_split_modules`; every name must match a module."""
    model = make_head(head)
    for name in model._no_split_modules:
        assert get_module_class_from_name(model, name) is XLSTMBlock


# ---- checkpointing, mixed precision, resuming --------------------------------------------------------


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_activation_checkpointing_in_training_arguments_gives_the_same_update(family, tmp_path):
    family_config = {"block_family": family}
    plain = trained_weights("causal_lm", tmp_path, family_config, max_steps=2)
    checkpointed = trained_weights("causal_lm", tmp_path, family_config, max_steps=2, activation_checkpointing=True)
    assert_same_weights(checkpointed, plain)


def test_bf16_autocast_on_the_cpu_is_close_to_float32_and_keeps_states_in_float32():
    model = make_head("causal_lm", layer_types=["mlstm", "slstm"]).train()
    ids = torch.randint(3, VOCAB, (2, 20), generator=torch.Generator().manual_seed(2))
    reference = model(ids, labels=ids)
    reference.loss.backward()
    reference_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(ids, labels=ids, use_cache=True)
    mixed.loss.backward()
    assert_close(mixed.loss.float(), reference.loss, rtol=2e-2, atol=2e-2)
    cell_states = [cell_state for (_, cell_state), _ in mixed.cache_params.layer_states]
    assert all(tensor.dtype == torch.float32 for tensor in tree_leaves(cell_states))  # the recurrent states
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
        error = (p.grad - reference_grads[name]).norm() / reference_grads[name].norm().clamp_min(1e-12)
        assert error < 0.1, f"{name}: relative gradient error {error:.3f} under bf16 autocast"


def test_trainer_with_bf16_on_the_cpu_trains(tmp_path):
    trainer = make_trainer("causal_lm", make_head("causal_lm"), tmp_path, bf16=True, max_steps=3)
    assert np.isfinite(trainer.train().training_loss)


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    """A run of 4 steps that wrote a checkpoint after step 2, and a new run resumed from that checkpoint, end
    with the same weights, bit for bit (optimizer, schedule, sampler and random states restored)."""
    arguments = {"max_steps": 4, "per_device_train_batch_size": 4, "train_sampling_strategy": "random",
                 "optim": "adamw_torch", "learning_rate": 1e-2, "lr_scheduler_type": "linear",
                 "save_strategy": "steps", "save_steps": 2}
    uninterrupted = make_trainer("causal_lm", make_head("causal_lm"), tmp_path, **arguments)
    uninterrupted.train()
    resumed = make_trainer("causal_lm", make_head("causal_lm"), tmp_path / "resumed", **arguments)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    expected = dict(uninterrupted.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p, expected[name]), name


# ---- LoRA adapters (peft) ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["neurips", "large"])
def test_lora_adapters_train_save_and_reload(family, tmp_path):
    peft = pytest.importorskip("peft")
    sys.path.insert(0, str(EXAMPLES))
    from train_distributed import with_lora

    model = with_lora(make_head("causal_lm", block_family=family))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    trainer = make_trainer("causal_lm", model, tmp_path, max_steps=3, optim="adamw_torch", learning_rate=1e-2)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < before
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = peft.PeftModel.from_pretrained(make_head("causal_lm", block_family=family), tmp_path / "adapter")
    ids = torch.randint(3, VOCAB, (2, LENGTH), generator=torch.Generator().manual_seed(3))
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)
