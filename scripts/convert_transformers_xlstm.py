"""Convert a checkpoint of transformers' built-in xLSTM into an xlstm_hf checkpoint, once and for all.

    python scripts/convert_transformers_xlstm.py NX-AI/xLSTM-7b converted/xlstm-7b
    python scripts/convert_transformers_xlstm.py path/to/builtin_checkpoint path/to/output --dtype bfloat16

The source is a folder or a Hub repo id whose config.json says `"model_type": "xlstm"`. The output
folder loads with `AutoModelForCausalLM.from_pretrained` after `import xlstm_hf`; a tokenizer found
beside the source is copied along. The source is never modified.
"""

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer

from xlstm_hf import XLSTMForCausalLM
from xlstm_hf.checkpoint_mapping import is_transformers_xlstm_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder or Hub repo id of a built-in transformers xLSTM checkpoint")
    parser.add_argument("output", type=Path, help="folder to write the xlstm_hf checkpoint to (must not exist)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="store the weights in this dtype")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; choose a new output folder so that nothing there is overwritten.")
    if not is_transformers_xlstm_checkpoint(args.source):
        raise SystemExit(f"{args.source} is not a transformers xLSTM checkpoint (config.json model_type 'xlstm').")
    model = XLSTMForCausalLM.from_pretrained(args.source, dtype=getattr(torch, args.dtype) if args.dtype else None)
    model.save_pretrained(args.output)
    copy_tokenizer(args.source, args.output)
    print(f"converted {args.source} -> {args.output} ({model.num_parameters():,} parameters)")
    return args.output


def copy_tokenizer(source: str, output: Path) -> None:
    """Save the source's tokenizer beside the converted weights, where there is one."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return
    tokenizer.save_pretrained(output)


if __name__ == "__main__":
    main()
