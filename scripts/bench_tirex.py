"""Forecasting speed of TiRex on the CPU: xlstm_hf against tirex-ts, in one process with the same threads.

    python scripts/bench_tirex.py                       # batch 1 and 256, context 2048, horizon 64 (~15 min on 2 cores)
    python scripts/bench_tirex.py --no-compile          # without tirex-ts's torch.compile'd sLSTM (its compile is slow)
    python scripts/bench_tirex.py --quick               # seconds: a small model, batch 1 and 4

Both sides load the same checkpoint: a random-weight TiRex of the published size (12 sLSTM blocks of width
512, window 2048, 35M parameters) written in the real format by tirex-ts's own classes (no download). Rows
time `forecast(context, prediction_length)` of tirex-ts's PyTorch backend (`backend="torch"`, also with
`compile=True`, its torch.compile'd sLSTM loop) and `XLSTMForTimeSeriesPrediction.forecast` (compiled CPU
kernels, `slstm_bf16_rounding=True` as converted, which computes what tirex-ts's backend computes): the
median of `--repeats` calls after a warm-up, or one call where a call takes longer than `--slow` seconds;
wall-clock seconds, and CPU seconds of the process (all threads), which a busy machine disturbs less. Each row
also gives the largest difference of the quantiles, relative to their magnitude.
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _timing import cpu_model
from tirex.models.tirex import TiRexZero

from xlstm_hf import XLSTMForTimeSeriesPrediction

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
SIZES = {  # the published TiRex, and a small one for --quick
    "full": {"embedding_dim": 512, "num_blocks": 12, "num_heads": 4, "input_ff_dim": 2048, "train_ctx_len": 2048},
    "quick": {"embedding_dim": 64, "num_blocks": 2, "num_heads": 4, "input_ff_dim": 128, "train_ctx_len": 256},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--context", type=int, default=2048, help="context length of every series")
    parser.add_argument("--horizon", type=int, default=64, help="prediction_length")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, for both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=float, default=20.0, help="seconds beyond which one call is the measurement")
    parser.add_argument("--no-compile", action="store_true", help="leave out tirex-ts with compile=True")
    parser.add_argument("--quick", action="store_true", help="small model, batch 1 and 4, no compile: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.context, args.repeats, args.no_compile = [1, 4], 300, 1, True
    return args


def write_checkpoint(path: Path, size: dict) -> None:
    """A random TiRex in the format of NX-AI/TiRex's model.ckpt (tirex-ts leaves its sLSTM weights empty:
    they are drawn here)."""
    block_kwargs = {"all_slstm": True, "embedding_dim": size["embedding_dim"], "num_blocks": size["num_blocks"],
                    "num_heads": size["num_heads"], "return_last_states": True, "vocab_size": 0}
    hyper_parameters = {
        "model_config": {"input_patch_size": 32, "output_patch_size": 32, "quantiles": LEVELS,
                         "block_kwargs": block_kwargs, "input_ff_dim": size["input_ff_dim"]},
        "train_ctx_len": size["train_ctx_len"],
    }
    torch.manual_seed(0)
    model = TiRexZero(backend="torch", **hyper_parameters)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "_recurrent_kernel_" in name or "_bias_" in name or name.endswith("gate.weight"):
                parameter.normal_(0.0, 0.02)
    state_dict = {("block_stack." + key if key.startswith(("blocks.", "out_norm.")) else key): value
                  for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": hyper_parameters, "state_dict": state_dict}, path)


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor]:
    """(wall-clock seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(
    run: Callable[[], torch.Tensor], repeats: int, slow: float, warm_up: bool
) -> tuple[float, float, torch.Tensor]:
    """(wall-clock and CPU seconds per call, the quantiles): the medians of `repeats` calls after a warm-up
    call (always, with `warm_up`; otherwise only where the first call took less than `slow` seconds)."""
    wall, cpu, quantiles = timed(run)
    if wall > slow and not warm_up:
        return wall, cpu, quantiles
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu, quantiles = timed(run)
        walls.append(wall)
        cpus.append(cpu)
        if wall > slow:
            break
    return statistics.median(walls), statistics.median(cpus), quantiles


def contexts(batch: int, length: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(batch)
    return 100 + torch.randn(batch, length, generator=generator).cumsum(-1) / length**0.5 * 5


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    size = SIZES["quick" if args.quick else "full"]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "model.ckpt"
        write_checkpoint(checkpoint, size)
        ours = XLSTMForTimeSeriesPrediction.from_pretrained(checkpoint)
        peers = {"tirex-ts": TiRexZero.from_pretrained(str(checkpoint), backend="torch", device="cpu").eval()}
        if not args.no_compile:
            peers["tirex-ts compiled"] = TiRexZero.from_pretrained(str(checkpoint), backend="torch", device="cpu",
                                                                   compile=True).eval()
    print(f"CPU: {cpu_model()}; {args.threads} threads; torch {torch.__version__}; TiRex of "
          f"{ours.num_parameters():,} parameters; context {args.context}, horizon {args.horizon}")
    results = []
    for batch in args.batch_sizes:
        context = contexts(batch, args.context)
        row = {"batch": batch}
        row["xlstm_hf_s"], row["xlstm_hf_cpu_s"], expected = measure(
            lambda: ours.forecast(context, args.horizon).quantiles, args.repeats, args.slow, warm_up=True)
        for name, peer in peers.items():
            row[f"{name}_s"], row[f"{name}_cpu_s"], quantiles = measure(
                lambda: peer.forecast(context, prediction_length=args.horizon)[0], args.repeats, args.slow,
                warm_up="compiled" in name)
            row[f"{name}_ratio"] = row[f"{name}_s"] / row["xlstm_hf_s"]
            row[f"{name}_cpu_ratio"] = row[f"{name}_cpu_s"] / row["xlstm_hf_cpu_s"]
            row[f"{name}_max_relative_difference"] = float(((quantiles - expected).abs() / quantiles.abs()).max())
        results.append(row)
        print_row(row, peers)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "threads": args.threads, "context": args.context,
                                         "horizon": args.horizon, "rows": results}, indent=2))
    return results


def print_row(row: dict, peers: dict) -> None:
    parts = [f"batch {row['batch']:>4}: xlstm_hf {row['xlstm_hf_s']:.3f} s ({row['xlstm_hf_cpu_s']:.3f} CPU s)"]
    for name in peers:
        parts.append(f"{name} {row[f'{name}_s']:.3f} s ({row[f'{name}_cpu_s']:.3f} CPU s): xlstm_hf "
                     f"{row[f'{name}_ratio']:.1f}x faster ({row[f'{name}_cpu_ratio']:.1f}x in CPU time), max "
                     f"relative difference {row[f'{name}_max_relative_difference']:.1e}")
    print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
