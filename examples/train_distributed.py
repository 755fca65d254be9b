"""Train the xLSTM language model of `train_bible_lm.py` with `Trainer`, on one CPU or at scale.

The same script runs in every setting; the launcher decides how many processes take part:

    python examples/train_distributed.py                                   # one process (CPU or one GPU)
    torchrun --nproc_per_node 2 examples/train_distributed.py --use-cpu    # 2 CPU processes, DDP over gloo
    accelerate launch --config_file examples/accelerate/cpu_2_processes.yaml examples/train_distributed.py --use-cpu
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train_distributed.py  # DDP, NCCL
    accelerate launch --config_file examples/accelerate/fsdp.yaml examples/train_distributed.py       # FSDP2

`--batch-size` is per process: N processes train on N times the batch per step. Switches: `--bf16` (mixed
precision; the recurrent states stay in float32), `--activation-checkpointing`, `--torch-compile`, `--lora`
(PEFT adapters on the projections; `pip install peft`), `--gradient-accumulation-steps`, `--save-steps` and
`--resume` (continue from the newest checkpoint in the output folder). `--quick`: a seconds-long smoke run.
The main process writes the model, the tokenizer and `metrics.json` (validation perplexity) to `--output-dir`.
"""

import argparse
import math

from _common import parse_with_quick, write_metrics
from torch.distributed.fsdp import FSDPModule
from train_bible_lm import add_training_arguments, as_lm_dataset, build_xlstm, prepare_data
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

# `--quick` replaces these defaults (flags given explicitly still win)
QUICK_DEFAULTS = {
    "max_verses": 2000, "vocab_size": 512, "block_size": 32, "hidden_size": 32, "steps": 4, "batch_size": 4,
}
LORA_TARGETS = ["proj_up", "proj_down", "qkvo_proj", "out_proj"]  # the linear projections of both block families


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser, "outputs/distributed_lm")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--optim", default="adamw_torch", help="a TrainingArguments optimizer name, e.g. sgd")
    parser.add_argument("--use-cpu", action="store_true", help="train on the CPU even where a GPU is present")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (autocast)")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--torch-compile", action="store_true")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    parser.add_argument("--save-steps", type=int, default=0, help="write a checkpoint every this many steps")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    return parse_with_quick(parser, argv, QUICK_DEFAULTS)


def training_arguments(args: argparse.Namespace) -> TrainingArguments:
    """The recipe of train_bible_lm.py, with the switches of this script."""
    return TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        optim=args.optim,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.1,
        max_grad_norm=1.0,
        logging_steps=max(args.steps // 10, 1),
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        prediction_loss_only=True,
        seed=args.seed,
        use_cpu=args.use_cpu,
        bf16=args.bf16,
        activation_checkpointing=args.activation_checkpointing,
        torch_compile=args.torch_compile,
        report_to=[],
    )


def with_lora(model):
    """The model with LoRA adapters on its projections; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    config = LoraConfig(r=8, lora_alpha=16, target_modules=[name for name in LORA_TARGETS if name in present])
    return get_peft_model(model, config)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    tokenizer, train_blocks, validation_blocks = prepare_data(args)
    model = build_xlstm(args, tokenizer)
    if args.lora:
        model = with_lora(model)
    trainer = Trainer(
        model=model,
        args=training_arguments(args),
        train_dataset=as_lm_dataset(train_blocks),
        eval_dataset=as_lm_dataset(validation_blocks),
    )
    resume_from = get_last_checkpoint(args.output_dir) if args.resume and args.output_dir.is_dir() else None
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    metrics = {
        "processes": trainer.args.world_size,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "sharded_modules": sum(isinstance(module, FSDPModule) for module in trainer.model.modules()),
        "global_batch": trainer.args.world_size * args.batch_size * args.gradient_accumulation_steps,
        "validation_perplexity": math.exp(trainer.evaluate()["eval_loss"]),
        "train_time_s": train_output.metrics["train_runtime"],
    }
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(args.output_dir)
        write_metrics(args.output_dir, metrics)
        print(f"RESULT {metrics['processes']} process(es), global batch {metrics['global_batch']}: "
              f"validation perplexity {metrics['validation_perplexity']:.1f} | saved to {args.output_dir}")
    return metrics


if __name__ == "__main__":
    main()
