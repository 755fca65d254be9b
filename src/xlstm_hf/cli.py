"""`xlstm-hf env`: the versions and the backend each op would use on this machine, and why, and the peers'
GPU kernels (mlstm_kernels, flashrnn) that "auto" takes on GPUs until ours are validated.
`xlstm-hf build`: compile the kernels now (ahead of time) into torch's extension cache: the CPU kernels,
and the CUDA kernels where torch has CUDA and nvcc is found."""

import argparse
import platform
import sys

import torch
import transformers

import xlstm_hf

from .ops import OPS, choose_backend, peers
from .ops.extension import build_extension


def environment_report() -> str:
    """Versions, threads, the backend of every op on the CPU and on a CUDA device (here or not), the peers."""
    lines = [
        f"xlstm_hf {xlstm_hf.__version__}, torch {torch.__version__}, transformers {transformers.__version__}",
        f"python {platform.python_version()} on {platform.platform()}, {torch.get_num_threads()} torch threads",
        "",
        f"{'op':<18} {'device':<7} {'backend':<8} why",
    ]
    lines += backend_rows(torch.device("cpu")) + backend_rows(torch.device("cuda"))
    if not torch.cuda.is_available():
        lines.append("(no CUDA device here: the cuda rows say what one would run, without padding or autograd)")
    return "\n".join(lines + ["", *peer_report()])


def backend_rows(device: torch.device) -> list[str]:
    """The backend of every op on `device` for a plain call, and why."""
    rows = []
    for op in OPS:
        backend, why = choose_backend(op, device)
        rows.append(f"{op:<18} {device.type:<7} {backend:<8} {why}")
    return rows


def peer_report() -> list[str]:
    """Each peer package: installed or not (version, Triton), its licence and the kernel it runs per op."""
    lines = ["peers, whose GPU kernels \"auto\" runs on CUDA devices (without autograd) until ours are validated:"]
    for package, licence in peers.LICENCES.items():
        usable, status = peers.package_status(package)
        kernels = ", ".join(f"{op} -> {kernel}" for op, (peer, kernel) in peers.GPU_KERNELS.items() if peer == package)
        lines.append(f"  {package:<14} {status if usable else 'not usable: ' + status} ({licence}): {kernels}")
    return lines


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
