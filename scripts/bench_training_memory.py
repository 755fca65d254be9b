"""Peak memory of one training step (forward + backward, batch 1, float32, CPU) against the sequence length,
xlstm_hf beside transformers' built-in xLSTM of the same size and weights (xLSTM-Large blocks), and our
NeurIPS blocks (m-s-m-m) of the same width.

    python scripts/bench_training_memory.py            # T = 1k, 4k, 16k (a few minutes on 2 cores)
    python scripts/bench_training_memory.py --quick    # T = 256, 512, 1k: seconds, a smoke run

Each measurement runs in a fresh process: the model is built and warmed up on a short input, the peak
resident set (VmHWM) is reset, one step runs, and the growth of the peak over the resident set before the
step is reported: the activations kept for the backward, the gradients and the work buffers. Linear cost
in T shows as a constant MiB per 1k tokens across the columns.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from bench_cpu import builtin_large_lm, ours_from_builtin

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM

SIZE = {"vocab": 256, "hidden": 256}
CONTENDERS = ("xlstm_hf Large", "transformers xLSTM", "xlstm_hf NeurIPS m-s-m-m")


def build(contender: str) -> torch.nn.Module:
    if contender == "transformers xLSTM":
        return builtin_large_lm(SIZE, mode="train").train()
    if contender == "xlstm_hf Large":
        return ours_from_builtin(builtin_large_lm(SIZE, mode="train")).train()
    config = XLSTMConfig(vocab_size=SIZE["vocab"], hidden_size=SIZE["hidden"], num_hidden_layers=4, num_heads=4,
                         layer_types=["mlstm", "slstm", "mlstm", "mlstm"])
    torch.manual_seed(0)
    return XLSTMForCausalLM(config).train()


def status_mib(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def training_step(model: torch.nn.Module, length: int) -> None:
    ids = torch.randint(1, SIZE["vocab"], (1, length), generator=torch.Generator().manual_seed(0))
    model(ids, labels=ids, use_cache=False).loss.backward()  # the built-in fails backward with its cache
    model.zero_grad(set_to_none=True)


def measure(contender: str, length: int) -> float:
    """MiB the peak resident set grows by during one training step of `length` tokens (in this process)."""
    model = build(contender)
    training_step(model, 128)  # warm-up: allocator pools, BLAS buffers, the compiled kernels
    before = status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    training_step(model, length)
    return status_mib("VmHWM") - before


def measure_in_fresh_process(contender: str, length: int) -> float:
    command = [sys.executable, __file__, "--measure", contender, str(length)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T = 256, 512, 1k")
    parser.add_argument("--measure", nargs=2, metavar=("CONTENDER", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(measure(args.measure[0], int(args.measure[1])))
        return {}
    lengths = (256, 512, 1024) if args.quick else (1024, 4096, 16384)
    table = {name: {length: measure_in_fresh_process(name, length) for length in lengths} for name in CONTENDERS}
    print(f"peak memory of a training step, MiB (batch 1, hidden {SIZE['hidden']}, 4 blocks, float32)")
    print(f"{'':28}" + "".join(f"{f'T={length}':>12}" for length in lengths) + f"{'MiB per 1k tokens':>22}")
    for name, row in table.items():
        per_1k = (row[lengths[-1]] - row[lengths[0]]) / (lengths[-1] - lengths[0]) * 1000
        print(f"{name:28}" + "".join(f"{row[length]:12.0f}" for length in lengths) + f"{per_1k:22.1f}")
    ours, peer = table["xlstm_hf Large"][lengths[-1]], table["transformers xLSTM"][lengths[-1]]
    print(f"RESULT at T={lengths[-1]}: xlstm_hf Large {ours:.0f} MiB, transformers xLSTM {peer:.0f} MiB "
          f"(ratio {ours / peer:.2f})")
    return table


if __name__ == "__main__":
    main()
