"""CPU speed of the compiled kernels against their peers, measured in one run (float32).

    python scripts/bench_kernels_cpu.py            # the table of the README (a few minutes on 2 cores)
    python scripts/bench_kernels_cpu.py --quick    # seconds, a smoke run

* sLSTM block (the layer and its pre-norm), forward+backward, B=8, T=512, hidden 256, 4 heads: our
  compiled kernel against our PyTorch reference, the official `xlstm` "vanilla" sLSTM with the same
  weights, and `torch.nn.LSTM` of the same hidden size (oneDNN);
* greedy generation, ms per token at batch 1 and 8, of a small mixed model (blocks m-s-m-m, hidden 128)
  against transformers' built-in xLSTM of the same size (4 mLSTM blocks, hidden 128).
Rows alternate the contenders repeat by repeat and report medians.
"""

import argparse
from collections.abc import Callable

import torch
import transformers
from _timing import cpu_model, medians
from xlstm import sLSTMBlockConfig, sLSTMLayerConfig, xLSTMBlockStack, xLSTMBlockStackConfig

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM, XLSTMModel, convert_official_xlstm

SIZES = {
    "full": dict(batch=8, length=512, hidden=256, repeats=5, lm_hidden=128, vocab=2048, new_tokens=64),
    "quick": dict(batch=2, length=32, hidden=64, repeats=2, lm_hidden=128, vocab=256, new_tokens=4),
}


def slstm_block(size: dict) -> xLSTMBlockStack:
    """The official sLSTM block (layer and pre-norm, no feed-forward), Python-loop backend."""
    config = xLSTMBlockStackConfig(
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=4),
            feedforward=None,
        ),
        slstm_at="all",
        num_blocks=1,
        embedding_dim=size["hidden"],
        context_length=size["length"],
        add_post_blocks_norm=False,
    )
    return xLSTMBlockStack(config).train()


def forward_backward(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run():
        inputs = x.clone().requires_grad_()
        module(inputs).square().mean().backward()

    return run


def slstm_rows(size: dict) -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    official = slstm_block(size)
    ours = convert_official_xlstm(official).train()
    native = XLSTMModel(XLSTMConfig.from_dict({**ours.config.to_dict(), "backend": "native"})).train()
    native.load_state_dict(ours.state_dict())
    lstm = torch.nn.LSTM(size["hidden"], size["hidden"], batch_first=True)
    x = torch.randn(size["batch"], size["length"], size["hidden"])
    seconds = medians(
        {
            "compiled": forward_backward(lambda v: ours(inputs_embeds=v).last_hidden_state, x),
            "native": forward_backward(lambda v: native(inputs_embeds=v).last_hidden_state, x),
            "official": forward_backward(official, x),
            "lstm": forward_backward(lambda v: lstm(v)[0], x),
        },
        size["repeats"],
    )
    ms = {name: 1000 * value for name, value in seconds.items()}
    return [
        ("sLSTM block fwd+bwd, xlstm_hf compiled", ms["compiled"], "ms"),
        ("sLSTM block fwd+bwd, xlstm_hf PyTorch reference", ms["native"], "ms"),
        ("sLSTM block fwd+bwd, official xlstm vanilla", ms["official"], "ms"),
        ("LSTM fwd+bwd, torch.nn.LSTM (oneDNN)", ms["lstm"], "ms"),
        ("official vanilla / xlstm_hf compiled", ms["official"] / ms["compiled"], "x (goal >= 20)"),
        ("xlstm_hf compiled / torch.nn.LSTM", ms["compiled"] / ms["lstm"], "x (goal <= 1.5)"),
    ]


def generation_rows(size: dict) -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    hidden, vocab = size["lm_hidden"], size["vocab"]
    ours = XLSTMForCausalLM(XLSTMConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=4, num_heads=4,
        layer_types=["mlstm", "slstm", "mlstm", "mlstm"], block_family="large", pad_token_id=0,
    )).eval()
    builtin = transformers.xLSTMForCausalLM(transformers.xLSTMConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=4, num_heads=4, chunk_size=64,
        autocast_kernel_dtype="float32", pad_token_id=0, bos_token_id=0, eos_token_id=0,
    )).eval()
    rows = []
    for batch in (1, 8):
        prompt = torch.randint(1, vocab, (batch, 16))
        settings = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=size["new_tokens"],
                        min_new_tokens=size["new_tokens"], do_sample=False, pad_token_id=0)
        contenders = {"ours": ours, "builtin": builtin}
        seconds = medians(
            {name: lambda model=model: model.generate(prompt, **settings) for name, model in contenders.items()},
            size["repeats"],
        )
        ours_ms, builtin_ms = (1000 * seconds[name] / size["new_tokens"] for name in ("ours", "builtin"))
        rows += [
            (f"generation batch {batch}, xlstm_hf m-s-m-m", ours_ms, "ms/token"),
            (f"generation batch {batch}, transformers xLSTM m-m-m-m", builtin_ms, "ms/token"),
            (f"generation batch {batch}, transformers / xlstm_hf", builtin_ms / ours_ms, "x (goal >= 3)"),
        ]
    return rows


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    size = SIZES["quick" if parser.parse_args(argv).quick else "full"]
    rows = slstm_rows(size) + generation_rows(size)
    print(f"\nCPU: {cpu_model()}; float32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}\n")
    print(f"| {'measurement':<52} | {'value':>9} | unit")
    print(f"|{'-' * 54}|{'-' * 11}|{'-' * 16}")
    for name, value, unit in rows:
        print(f"| {name:<52} | {value:>9.2f} | {unit}")
    return rows


if __name__ == "__main__":
    main()
