"""Speed and scaling on the CPU: tokens/s of the forward and of forward+backward, generation ms/token
after a long prompt, and the peak memory of a training step, over sequence lengths 256 to 16k, for
xlstm_hf against transformers' built-in xLSTM, the official `xlstm` stack, `torch.nn.LSTM` and a Llama of
the same width and depth; the log-log plot shows which costs grow linearly and which quadratically.

    python benchmarks/speed_scaling.py            # the study (results/speed_scaling.json, .png)
    python benchmarks/speed_scaling.py --quick    # seconds, a smoke run

Batch 1, float32, hidden 256, 4 blocks, vocabulary 256; each measurement the median of a few repeats after
a warm-up. Peak memory is measured in a fresh process per model and length (in one long process the
allocator's reuse hides it): after a warm-up step on 128 tokens the peak resident set (VmHWM) is reset, and
its growth during one training step is reported.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import matplotlib
import torch
from torch import nn
from training import publish, study_parser
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_cpu import builtin_large_lm, median_seconds, official_neurips_lm, ours_from_builtin  # noqa: E402
from bench_training_memory import status_mib  # noqa: E402

from xlstm_hf import XLSTMConfig, XLSTMForCausalLM  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

HIDDEN, LAYERS, VOCAB = 256, 4, 256
# the official NeurIPS mLSTM runs its parallel form, T x T per head and block: 16k tokens exceed 24 GiB
OFFICIAL = "official xlstm NeurIPS (vanilla sLSTM)"
OFFICIAL_MAX_LENGTH = 4096


class LSTMLanguageModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, HIDDEN)
        self.lstm = nn.LSTM(HIDDEN, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, ids):
        return self.head(self.lstm(self.embedding(ids))[0])


CONTENDERS = ("xlstm_hf NeurIPS m-s-m-m", "xlstm_hf Large", "transformers xLSTM (Large)", OFFICIAL, "torch.nn.LSTM",
              "Llama (sdpa)")


def build(name: str, max_length: int) -> tuple[nn.Module, nn.Module | None]:
    """(model, the same model for generation, or None where it has no generate()): the built-in xLSTM trains
    in its "train" mode and generates in its "inference" mode (same weights)."""
    size = {"vocab": VOCAB, "hidden": HIDDEN, "length": min(max_length, OFFICIAL_MAX_LENGTH)}
    torch.manual_seed(0)
    neurips = XLSTMConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_heads=4,
        layer_types=["mlstm", "slstm", "mlstm", "mlstm"],
    )
    llama = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=688,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        attn_implementation="sdpa",
    )
    model = {
        "xlstm_hf NeurIPS m-s-m-m": lambda: XLSTMForCausalLM(neurips),
        "xlstm_hf Large": lambda: ours_from_builtin(builtin_large_lm(size, mode="train")),
        "transformers xLSTM (Large)": lambda: builtin_large_lm(size, mode="train"),
        OFFICIAL: lambda: official_neurips_lm(size),
        "torch.nn.LSTM": LSTMLanguageModel,
        "Llama (sdpa)": lambda: LlamaForCausalLM(llama),
    }[name]()
    if name == "transformers xLSTM (Large)":
        return model, builtin_large_lm(size, mode="inference")
    return model, model if hasattr(model, "generate") else None


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    if isinstance(model, PreTrainedModel):
        return model(ids, use_cache=False).logits  # the built-in xLSTM breaks backward with its cache
    return model(ids)


def token_ids(length: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, (1, length), generator=torch.Generator().manual_seed(0))


def training_step(model: nn.Module, ids: torch.Tensor) -> None:
    model.train()
    logits(model, ids).float().square().mean().backward()
    model.zero_grad(set_to_none=True)


def peak_mib(name: str, length: int, max_length: int) -> float:
    """MiB the peak resident set grows by during one training step (run in this process: see the docstring)."""
    model, _ = build(name, max_length)
    training_step(model, token_ids(128))  # warm-up: allocator pools, BLAS buffers, the compiled kernels
    before = status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident set starts from here
    training_step(model, token_ids(length))
    return status_mib("VmHWM") - before


def peak_mib_in_fresh_process(name: str, length: int, max_length: int) -> float:
    command = [sys.executable, __file__, "--peak-mib-of", name, str(length), str(max_length)]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


def measure(model: nn.Module, generator: nn.Module | None, length: int, repeats: int, new_tokens: int) -> dict:
    ids = token_ids(length)
    model.eval()
    with torch.no_grad():
        forward = median_seconds(lambda: logits(model, ids), repeats)
    training = median_seconds(lambda: training_step(model, ids), repeats)
    result = {"forward_tokens_per_s": length / forward, "train_tokens_per_s": length / training}
    if generator is not None:
        generator.eval()

        def generate(count):
            return lambda: generator.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=count,
                min_new_tokens=count,
                do_sample=False,
                pad_token_id=0,
            )

        extra = median_seconds(generate(1 + new_tokens), repeats) - median_seconds(generate(1), repeats)
        result["generate_ms_per_token"] = 1000 * extra / new_tokens
    return result


def plot(results: dict, lengths) -> plt.Figure:
    panels = [
        ("forward_tokens_per_s", "forward, tokens/s"),
        ("train_tokens_per_s", "forward+backward, tokens/s"),
        ("generate_ms_per_token", "generation after the prompt, ms/token"),
        ("peak_mib", "training peak, MiB"),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    for axis, (key, title) in zip(axes, panels):
        for index, (name, by_length) in enumerate(results.items()):
            points = [(length, by_length[str(length)][key]) for length in lengths
                      if key in by_length.get(str(length), {})]
            if points:
                axis.loglog(*zip(*points), "o-", color=f"C{index}", label=name)  # one colour per model in all panels
        axis.set(title=title, xlabel="sequence length T")
    axes[0].legend(fontsize=7)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--peak-mib-of", nargs=3, metavar=("NAME", "T", "MAX_T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_mib_of:
        name, length, max_length = args.peak_mib_of
        print(peak_mib(name, int(length), int(max_length)))
        return {}
    if args.quick:
        args.lengths, args.repeats, args.new_tokens = [64, 128], 1, 2  # the built-in needs multiples of 64
    results = {}
    for name in CONTENDERS:
        model, generator = build(name, max(args.lengths))
        results[name] = {}
        for length in args.lengths:
            if name == OFFICIAL and length > OFFICIAL_MAX_LENGTH:
                continue
            result = measure(model, generator, length, args.repeats, args.new_tokens)
            result["peak_mib"] = peak_mib_in_fresh_process(name, length, max(args.lengths))
            results[name][str(length)] = result
            print(
                f"{name:40} T={length:6}  " + "  ".join(f"{k} {v:,.1f}" for k, v in results[name][str(length)].items())
            )
    publish(args, "speed_scaling", results, lambda results: plot(results, args.lengths))
    return results


if __name__ == "__main__":
    main()
