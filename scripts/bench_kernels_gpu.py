"""GPU speed of the kernels against their peers, measured in one run on one GPU (bf16 models, CUDA events,
medians). Run by scripts/gpu_check_bench.sh; a contender that fails or is not installed prints its error
in its row instead of stopping the others. Torch with CUDA suffices for xlstm_hf's kernel rows; the sLSTM
block rows need transformers and the official `xlstm`, the TFLA rows `mlstm_kernels`.

    python scripts/bench_kernels_gpu.py            # the figures of the goals
    python scripts/bench_kernels_gpu.py --quick    # small sizes, seconds

The table ends the output, in Markdown:

* sLSTM forward+backward, B=16, T=1024, 4 heads of 192: xlstm_hf's CUDA kernel alone (float32), and the
  block (layer and pre-norm, bf16) against the official `xlstm` sLSTM with its "cuda" and "vanilla"
  backends, same weights;
* mLSTM chunkwise forward and forward+backward, 16 heads, d_qk 128, d_v 256, 65,536 tokens (T = 8192):
  xlstm_hf's CUDA kernels against its PyTorch chunkwise reference, `mlstm_kernels`
  chunkwise--triton_xl_chunk, and torch's flash attention (SDPA) at the same shape;
* mLSTM step at batch 256 (16 heads, 128 x 256 memory): bytes moved per second over a device-to-device
  copy's.
"""

import argparse
import json
import statistics
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import xlstm_hf  # noqa: F401
except ImportError:  # no transformers: xlstm_hf.ops (torch only) from a bare package
    sys.modules["xlstm_hf"] = types.ModuleType("xlstm_hf")
    sys.modules["xlstm_hf"].__path__ = [str(Path(__file__).resolve().parents[1] / "src" / "xlstm_hf")]

from xlstm_hf import ops
from xlstm_hf.ops import compiled
from xlstm_hf.ops.extension import extension_has_cuda, extension_status

SIZES = {
    "full": dict(slstm=(16, 1024, 768, 4), mlstm=(8, 16, 8192, 128, 256), step=(256, 16, 128, 256), repeats=20),
    "quick": dict(slstm=(2, 64, 128, 4), mlstm=(1, 2, 512, 64, 64), step=(8, 2, 32, 32), repeats=3),
}


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of `run` on the GPU (CUDA events), after two warm-up runs."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def attempt(run: Callable[[], float]) -> float | str:
    try:
        return run()
    except Exception as error:  # a peer that is missing or fails on this machine: say so in its row
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"


def slstm_rows(size: dict) -> list[tuple[str, float | str, str]]:
    B, T, hidden, heads = size["slstm"]
    D = hidden // heads
    x = torch.randn(B, T, hidden, device="cuda", dtype=torch.bfloat16)

    def kernel_alone() -> float:
        g = torch.Generator(device="cuda").manual_seed(0)
        gates_x = torch.randn(B, heads, T, 4, D, device="cuda", generator=g).requires_grad_()
        kernel = (torch.randn(heads, D, 4, D, device="cuda", generator=g) * D**-0.5).requires_grad_()
        bias = torch.zeros(heads, 4, D, device="cuda", requires_grad=True)

        def run():
            h, _ = ops.slstm(gates_x, kernel, bias, backend="cuda")
            h.square().mean().backward()

        return median_ms(run, size["repeats"])

    def official(backend: str) -> torch.nn.Module:
        from xlstm import sLSTMBlockConfig, sLSTMLayerConfig, xLSTMBlockStack, xLSTMBlockStackConfig

        torch.manual_seed(0)
        config = xLSTMBlockStackConfig(
            slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend=backend, num_heads=heads), feedforward=None),
            slstm_at="all", num_blocks=1, embedding_dim=hidden, context_length=T, add_post_blocks_norm=False,
        )
        return xLSTMBlockStack(config).cuda().to(torch.bfloat16)

    def fwd_bwd(module: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run():
            inputs = x.clone().requires_grad_()
            module(inputs).float().square().mean().backward()

        return run

    def ours() -> float:
        from xlstm_hf import XLSTMConfig, XLSTMModel, convert_official_xlstm

        converted = convert_official_xlstm(official("vanilla").float())
        model = XLSTMModel(XLSTMConfig.from_dict({**converted.config.to_dict(), "backend": "cuda"}))
        model.load_state_dict(converted.state_dict())
        model = model.cuda().to(torch.bfloat16)
        return median_ms(fwd_bwd(lambda v: model(inputs_embeds=v).last_hidden_state), size["repeats"])

    ms = {
        "kernel": attempt(kernel_alone),
        "ours": attempt(ours),
        "cuda": attempt(lambda: median_ms(fwd_bwd(official("cuda")), size["repeats"])),
        "vanilla": attempt(lambda: median_ms(fwd_bwd(official("vanilla")), max(1, size["repeats"] // 5))),
    }
    return [
        ("sLSTM kernel fwd+bwd (float32), xlstm_hf CUDA", ms["kernel"], "ms"),
        ("sLSTM block fwd+bwd, xlstm_hf CUDA", ms["ours"], "ms"),
        ("sLSTM block fwd+bwd, official xlstm cuda", ms["cuda"], "ms"),
        ("sLSTM block fwd+bwd, official xlstm vanilla", ms["vanilla"], "ms"),
        ("official cuda / xlstm_hf", ratio(ms["cuda"], ms["ours"]), "x (goal >= 2)"),
        ("official vanilla / xlstm_hf", ratio(ms["vanilla"], ms["ours"]), "x (goal >= 30)"),
    ]


def ratio(numerator: float | str, denominator: float | str) -> float | str:
    both = isinstance(numerator, float) and isinstance(denominator, float)
    return numerator / denominator if both else "n/a"


def mlstm_rows(size: dict) -> list[tuple[str, float | str, str]]:
    B, H, T, Dqk, Dv = size["mlstm"]
    g = torch.Generator(device="cuda").manual_seed(0)

    def inputs(requires_grad: bool):
        shapes = [(B, H, T, Dqk), (B, H, T, Dqk), (B, H, T, Dv), (B, H, T), (B, H, T)]
        return [torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16).requires_grad_(requires_grad)
                for s in shapes]

    def timed(kernel: Callable, backward: bool) -> float:
        tensors = inputs(backward)

        def run():
            h = kernel(*tensors)
            if backward:
                h.float().sum().backward()

        with torch.set_grad_enabled(backward):
            return median_ms(run, size["repeats"])

    def ours(q, k, v, i, f):
        return ops.mlstm(q, k, v, i, f, chunk_size=64, backend="cuda")[0]

    def reference(q, k, v, i, f):
        return ops.mlstm(q, k, v, i, f, chunk_size=64, backend="native")[0]

    def tfla(q, k, v, i, f):
        from mlstm_kernels.torch import get_mlstm_kernel

        return get_mlstm_kernel("chunkwise--triton_xl_chunk")(q, k, v, i, f, chunk_size=128)

    def flash(q, k, v, i, f):
        return F.scaled_dot_product_attention(q, k, v[..., :Dqk], is_causal=True)

    rows = []
    contenders = (("xlstm_hf CUDA", ours), ("xlstm_hf PyTorch reference", reference), ("mlstm_kernels TFLA", tfla),
                  ("SDPA flash", flash))
    for name, kernel in contenders:
        for backward in (False, True):
            rows.append((f"mLSTM {'fwd+bwd' if backward else 'fwd'}, {name}", attempt(lambda: timed(kernel, backward)),
                         "ms"))
    return rows


def step_rows(size: dict) -> list[tuple[str, float | str, str]]:
    B, H, Dqk, Dv = size["step"]
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(B, H, Dqk, device="cuda", generator=g) for _ in range(2))
    v = torch.randn(B, H, Dv, device="cuda", generator=g)
    i, f = (torch.randn(B, H, device="cuda", generator=g) for _ in range(2))
    state = (torch.randn(B, H, Dqk, Dv, device="cuda", generator=g), torch.randn(B, H, Dqk, device="cuda",
                                                                                generator=g),
             torch.randn(B, H, device="cuda", generator=g))
    step_ms = attempt(lambda: median_ms(lambda: compiled.mlstm_step(q, k, v, i, f, state), size["repeats"]))
    moved = 2 * state[0].nbytes + 2 * state[1].nbytes + (q.nbytes + k.nbytes + 2 * v.nbytes)
    source = torch.empty(2**28, device="cuda", dtype=torch.uint8).random_()
    target = torch.empty_like(source)
    copy_ms = median_ms(lambda: target.copy_(source), size["repeats"])
    copy_bandwidth = 2 * source.nbytes / copy_ms / 1e6  # GB/s, bytes read and written
    step_bandwidth = moved / step_ms / 1e6 if isinstance(step_ms, float) else "n/a"
    return [
        ("mLSTM step, batch 256, xlstm_hf CUDA", step_ms, "ms"),
        ("mLSTM step bandwidth", step_bandwidth, "GB/s"),
        ("device-to-device copy bandwidth", copy_bandwidth, "GB/s"),
        ("step / copy bandwidth", ratio(step_bandwidth, copy_bandwidth), "(goal >= 0.7)"),
    ]


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_kernels_gpu.py needs a GPU; see scripts/gpu_check_bench.sh")
    if not extension_has_cuda():
        raise SystemExit(f"the CUDA kernels did not build: {extension_status()[1]}")
    size = SIZES["quick" if args.quick else "full"]
    rows = slstm_rows(size) + mlstm_rows(size) + step_rows(size)
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print(f"| {'measurement':<48} | {'value':>10} | unit |\n|{'-' * 50}|{'-' * 12}|------|")
    for name, value, unit in rows:
        shown = f"{value:>10.3f}" if isinstance(value, float) else f"{value:>10}"
        print(f"| {name:<48} | {shown} | {unit} |")
    if args.out:
        with open(args.out, "w") as file:
            json.dump([{"measurement": n, "value": v, "unit": u} for n, v, u in rows], file, indent=1)
    return rows


if __name__ == "__main__":
    main()
