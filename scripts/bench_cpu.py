"""CPU speed of xlstm_hf against its peers, same architecture and same weights on both sides.

    python scripts/bench_cpu.py            # the table of the README (a few minutes on 2 cores)
    python scripts/bench_cpu.py --quick    # seconds, a smoke run

Rows (float32, all in one run, the median of several repeats after a warm-up):
* NeurIPS blocks (mLSTM and sLSTM, pattern m-s-m-m): forward and forward+backward tokens/s of our model
  against the official `xlstm` block stack (its sLSTM "vanilla" backend, a Python loop like ours);
* xLSTM-Large blocks: forward and forward+backward tokens/s against transformers' built-in xLSTM,
  and greedy generation ms/token at batch 1 and 8.
The peers are converted to ours with `convert_official_xlstm` / `XLSTMForCausalLM.from_pretrained`, so
the weights are identical; each row also checks that both sides compute the same logits.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import transformers
from _timing import cpu_model
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMLMModel,
    xLSTMLMModelConfig,
)

from xlstm_hf import XLSTMForCausalLM, convert_official_xlstm

SIZES = {
    "full": dict(hidden=256, vocab=2048, batch=4, length=512, new_tokens=64, repeats=5),
    "quick": dict(hidden=128, vocab=256, batch=2, length=64, new_tokens=8, repeats=2),
}


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return logits_without_cache(model, ids)

    return run


def forward_backward(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], object]:
    def run():
        logits_without_cache(model, ids).float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def logits_without_cache(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits of a whole sequence. The built-in xLSTM must not build a cache when it is trained: it writes
    the states into it in place, which breaks backward()."""
    if isinstance(model, transformers.PreTrainedModel):
        return model(ids, use_cache=False).logits
    return model(ids)


def official_neurips_lm(size: dict) -> xLSTMLMModel:
    """The official NeurIPS stack with blocks m-s-m-m and its Python-loop sLSTM backend."""
    config = xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=4),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu"),
        ),
        slstm_at=[1],
        num_blocks=4,
        embedding_dim=size["hidden"],
        context_length=size["length"],
        vocab_size=size["vocab"],
    )
    model = xLSTMLMModel(config)
    model.reset_parameters()
    return model.eval()


def builtin_large_lm(size: dict, mode: str) -> transformers.xLSTMForCausalLM:
    """transformers' built-in xLSTM (xLSTM-Large blocks), in its `mode` ("train" or "inference")."""
    config = transformers.xLSTMConfig(
        vocab_size=size["vocab"], hidden_size=size["hidden"], num_hidden_layers=4, num_heads=4, chunk_size=64,
        mode=mode, autocast_kernel_dtype="float32", pad_token_id=0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.xLSTMForCausalLM(config).eval()


def ours_from_builtin(builtin: transformers.xLSTMForCausalLM) -> XLSTMForCausalLM:
    with tempfile.TemporaryDirectory() as folder:
        builtin.save_pretrained(folder)
        return XLSTMForCausalLM.from_pretrained(folder)


def check_same_logits(ours: torch.nn.Module, peer: torch.nn.Module, ids: torch.Tensor) -> None:
    with torch.no_grad():
        ours_logits, peer_logits = logits_without_cache(ours, ids), logits_without_cache(peer, ids)
    scale = peer_logits.abs().max().item()
    torch.testing.assert_close(ours_logits, peer_logits, rtol=1e-4, atol=1e-4 * max(scale, 1.0))


def generation_ms_per_token(model: torch.nn.Module, batch: int, size: dict) -> float:
    prompt = torch.randint(1, size["vocab"], (batch, 16))
    new = size["new_tokens"]

    def run():
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, min_new_tokens=new,
                       do_sample=False, pad_token_id=0)

    return 1000 * median_seconds(run, size["repeats"]) / new


def rows(size: dict) -> list[tuple[str, str, float, float, str]]:
    """(row, peer, ours, peer's, unit) for every measurement."""
    torch.manual_seed(0)
    ids = torch.randint(0, size["vocab"], (size["batch"], size["length"]))
    tokens = ids.numel()
    table = []

    official = official_neurips_lm(size)
    ours = convert_official_xlstm(official)
    check_same_logits(ours, official, ids)
    for name, make in (("forward", forward), ("forward+backward", forward_backward)):
        ours.train(name != "forward"), official.train(name != "forward")
        ours_s = median_seconds(make(ours, ids), size["repeats"])
        peer_s = median_seconds(make(official, ids), size["repeats"])
        table.append((f"NeurIPS m-s-m-m {name}", "official xlstm", tokens / ours_s, tokens / peer_s, "tokens/s"))

    for name, make, mode in (("forward", forward, "inference"), ("forward+backward", forward_backward, "train")):
        builtin = builtin_large_lm(size, mode)
        ours = ours_from_builtin(builtin)
        check_same_logits(ours, builtin, ids)
        ours.train(name != "forward"), builtin.train(name != "forward")
        ours_s = median_seconds(make(ours, ids), size["repeats"])
        peer_s = median_seconds(make(builtin, ids), size["repeats"])
        table.append((f"Large {name}", "transformers xLSTM", tokens / ours_s, tokens / peer_s, "tokens/s"))

    builtin = builtin_large_lm(size, "inference")
    ours = ours_from_builtin(builtin)
    for batch in (1, 8):
        ours_ms = generation_ms_per_token(ours, batch, size)
        peer_ms = generation_ms_per_token(builtin, batch, size)
        table.append((f"Large generate, batch {batch}", "transformers xLSTM", ours_ms, peer_ms, "ms/token"))
    return table


def print_table(table: list, size: dict) -> None:
    print(f"\nCPU: {cpu_model()}; float32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}; hidden {size['hidden']}, 4 blocks, "
          f"batch {size['batch']} x {size['length']} tokens\n")
    print(f"| {'measurement':<32} | {'peer':<20} | {'xlstm_hf':>10} | {'peer':>10} | {'unit':<8} | speed-up |")
    print(f"|{'-' * 34}|{'-' * 22}|{'-' * 12}|{'-' * 12}|{'-' * 10}|{'-' * 10}|")
    for row, peer, ours, theirs, unit in table:
        speedup = ours / theirs if unit == "tokens/s" else theirs / ours
        print(f"| {row:<32} | {peer:<20} | {ours:>10.1f} | {theirs:>10.1f} | {unit:<8} | {speedup:>7.2f}x |")


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    table = rows(size)
    print_table(table, size)
    return table


if __name__ == "__main__":
    main()
