"""`xlstm-hf env`: the versions and the backend each op would use on this machine, and why.
`xlstm-hf build`: compile the kernels now (ahead of time) into torch's extension cache: the CPU kernels,
and the CUDA kernels where torch has CUDA and nvcc is found."""

import argparse
import platform
import sys

import torch
import transformers

import xlstm_hf

from .ops import OPS, choose_backend
from .ops.extension import build_extension


def environment_report() -> str:
    """Versions, threads and the backend of every op on every device here."""
    lines = [
        f"xlstm_hf {xlstm_hf.__version__}, torch {torch.__version__}, transformers {transformers.__version__}",
        f"python {platform.python_version()} on {platform.platform()}, {torch.get_num_threads()} torch threads",
        "",
        f"{'op':<18} {'device':<7} {'backend':<8} why",
    ]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for op in OPS:
            backend, why = choose_backend(op, device)
            lines.append(f"{op:<18} {device.type:<7} {backend:<8} {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xlstm-hf", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help="versions and the backend each op would use here")
    commands.add_parser("build", help="compile the kernels now")
    args = parser.parse_args(argv)
    if args.command == "build":
        with_cuda = build_extension(verbose=True)
        print(f"the xlstm_hf kernels are built and load (CPU{' and CUDA' if with_cuda else ' only'})")
    else:
        print(environment_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
