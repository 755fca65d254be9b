"""Convert a TiRex checkpoint (NX-AI's `model.ckpt`) into an xlstm_hf checkpoint, once and for all.

    python scripts/convert_tirex.py NX-AI/TiRex converted/tirex
    python scripts/convert_tirex.py path/to/model.ckpt path/to/output --float32-recurrence

The source is the checkpoint file, a folder holding `model.ckpt`, or a Hub repo id (downloaded into the
Hub cache, or found there with HF_HUB_OFFLINE=1). The output folder loads with
`AutoModelForTimeSeriesPrediction.from_pretrained` after `import xlstm_hf`, without conversion. The weights
stay under the NXAI Community License: the output folder is a derivative of them (see the README). The
source is never modified.
"""

import argparse
from pathlib import Path

from xlstm_hf import XLSTMForTimeSeriesPrediction
from xlstm_hf.tirex import find_tirex_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="TiRex model.ckpt, a folder holding it, or a Hub repo id such as NX-AI/TiRex")
    parser.add_argument("output", type=Path, help="folder to write the xlstm_hf checkpoint to (must not exist)")
    parser.add_argument("--float32-recurrence", action="store_true",
                        help="run the sLSTM in float32 instead of TiRex's bfloat16 rounding (slstm_bf16_rounding)")
    parser.add_argument("--prediction-length", type=int, help="the default horizon of forward and generate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; choose a new output folder so that nothing there is overwritten.")
    if find_tirex_checkpoint(args.source) is None:
        raise SystemExit(f"{args.source} holds no TiRex checkpoint (a model.ckpt without config.json).")
    overrides = {"slstm_bf16_rounding": not args.float32_recurrence}
    if args.prediction_length is not None:
        overrides["prediction_length"] = args.prediction_length
    model = XLSTMForTimeSeriesPrediction.from_pretrained(args.source, **overrides)
    model.save_pretrained(args.output)
    print(f"converted {args.source} -> {args.output} ({model.num_parameters():,} parameters)")
    return args.output


if __name__ == "__main__":
    main()
