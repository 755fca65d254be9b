"""Short contexts on the CPU: forward+backward tokens/s of xLSTM block stacks against a same-size Llama.

    python scripts/bench_short_context.py            # the table (T = 128, 256, 1k; hidden 128, 256)
    python scripts/bench_short_context.py --quick    # seconds, a smoke run

Contenders, float32, 4 blocks each, the base models (no LM head), loss = mean of the squared outputs:
* "Large": `XLSTMConfig(block_family="large", layer_types=["mlstm"] * 4, num_heads=4)`;
* "NeurIPS m-s-m-m": NeurIPS blocks, the second one an sLSTM, 4 heads;
* "Large, PyTorch cell" and "NeurIPS, PyTorch cell": the same with the chunkwise mLSTM in PyTorch (the
  reference, as before the compiled CPU cell), every other op as "auto" chooses;
* "Llama (sdpa)": LlamaModel with the same hidden size, intermediate 8/3 of it, 4 heads.
The batch fills about 4k tokens per step. Every repeat runs each contender once, in turns, after a warm-up;
the table gives medians and the ratio of each to the Llama measured in the same process.
"""

import argparse
import contextlib
from collections.abc import Callable

import torch
from _timing import cpu_model, medians
from transformers import LlamaConfig, LlamaModel

import xlstm_hf.ops
from xlstm_hf import XLSTMConfig, XLSTMModel

SIZES = {
    "full": dict(hiddens=(128, 256), lengths=(128, 256, 1024), tokens=4096, repeats=15, vocab=1024),
    "quick": dict(hiddens=(64,), lengths=(32,), tokens=256, repeats=2, vocab=64),
}
LLAMA = "Llama (sdpa)"


@contextlib.contextmanager
def pytorch_cell():
    """The chunkwise mLSTM in PyTorch while the context lasts (`choose_backend` sees no compiled kernel for it)."""
    kept = xlstm_hf.ops._COMPILED_ON_CPU
    xlstm_hf.ops._COMPILED_ON_CPU = tuple(op for op in kept if op != "mlstm_chunkwise")
    try:
        yield
    finally:
        xlstm_hf.ops._COMPILED_ON_CPU = kept


def xlstm(hidden: int, vocab: int, family: str) -> XLSTMModel:
    layer_types = ["mlstm"] * 4 if family == "large" else ["mlstm", "slstm", "mlstm", "mlstm"]
    config = XLSTMConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=4, num_heads=4,
                         layer_types=layer_types, block_family=family)
    return XLSTMModel(config)


def llama(hidden: int, vocab: int) -> LlamaModel:
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=round(hidden * 8 / 3),
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=4096, attn_implementation="sdpa")
    return LlamaModel(config)


def training_step(model: torch.nn.Module, ids: torch.Tensor, context=contextlib.nullcontext) -> Callable[[], None]:
    """One forward+backward of `model` on `ids` (use_cache off: a training step)."""
    model.train()

    def run():
        with context():
            model(ids, use_cache=False).last_hidden_state.square().mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def contenders(hidden: int, ids: torch.Tensor, vocab: int) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    large, neurips = xlstm(hidden, vocab, "large"), xlstm(hidden, vocab, "neurips")
    return {
        LLAMA: training_step(llama(hidden, vocab), ids),
        "Large": training_step(large, ids),
        "Large, PyTorch cell": training_step(large, ids, pytorch_cell),
        "NeurIPS m-s-m-m": training_step(neurips, ids),
        "NeurIPS, PyTorch cell": training_step(neurips, ids, pytorch_cell),
    }


def rows(size: dict) -> list[tuple[int, int, int, str, float, float]]:
    """(hidden, T, batch, contender, tokens/s, ratio to the Llama) for every measurement."""
    table = []
    for hidden in size["hiddens"]:
        for length in size["lengths"]:
            batch = max(1, size["tokens"] // length)
            ids = torch.randint(0, size["vocab"], (batch, length), generator=torch.Generator().manual_seed(0))
            seconds = medians(contenders(hidden, ids, size["vocab"]), size["repeats"])
            for name, s in seconds.items():
                table.append((hidden, length, batch, name, ids.numel() / s, seconds[LLAMA] / s))
    return table


def print_table(table: list, size: dict) -> None:
    print(f"\nCPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; float32, 4 blocks, "
          f"forward+backward, medians of {size['repeats']} alternating repeats\n")
    print(f"| hidden | {'T':>5} | batch | {'contender':<22} | {'tokens/s':>9} | vs Llama |")
    print(f"|-------:|------:|------:|{'-' * 24}|{'-' * 10}:|---------:|")
    for hidden, length, batch, name, tokens_per_s, ratio in table:
        print(f"| {hidden:>6} | {length:>5} | {batch:>5} | {name:<22} | {tokens_per_s:>9.0f} | {ratio:>7.2f}x |")


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--repeats", type=int, help="repeats per contender (default: 15, quick: 2)")
    args = parser.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.repeats:
        size["repeats"] = args.repeats
    table = rows(size)
    print_table(table, size)
    return table


if __name__ == "__main__":
    main()
