"""Speed and scaling on the CPU: tokens/s of the forward and of forward+backward, generation ms/token
after a long prompt, and the peak memory of a training step, over sequence lengths 256 to 16k, for
xlstm_hf against transformers' built-in xLSTM, the official `xlstm` stack, `torch.nn.LSTM` and a Llama of
the same width and depth; the log-log plot shows which costs grow linearly and which quadratically.

    python benchmarks/speed_scaling.py            # the study (results/speed_scaling.json, .png)
    python benchmarks/speed_scaling.py --quick    # seconds, a smoke run

Batch 1, float32, hidden 256, 4 blocks, vocabulary 256; each measurement the median of a few repeats after
a warm-up; peak memory is the growth of the resident set during one training step (VmHWM reset first).
"""

import statistics
import sys
import time
from pathlib import Path

import matplotlib
import torch
from torch import nn
from training import publish, study_parser
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_cpu import builtin_large_lm, official_neurips_lm, ours_from_builtin  # noqa: E402

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


def contenders(max_length: int) -> dict[str, tuple[nn.Module, nn.Module | None]]:
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
    models = {
        "xlstm_hf NeurIPS m-s-m-m": XLSTMForCausalLM(neurips),
        "xlstm_hf Large": ours_from_builtin(builtin_large_lm(size, mode="train")),
        "transformers xLSTM (Large)": builtin_large_lm(size, mode="train"),
        OFFICIAL: official_neurips_lm(size),
        "torch.nn.LSTM": LSTMLanguageModel(),
        "Llama (sdpa)": LlamaForCausalLM(llama),
    }
    # (model, the same model for generation): the built-in trains in "train" mode and generates in "inference"
    # mode (same weights); the official stack and the plain LSTM have no generate()
    generators = {name: model for name, model in models.items() if hasattr(model, "generate")}
    generators["transformers xLSTM (Large)"] = builtin_large_lm(size, mode="inference")
    return {name: (model, generators.get(name)) for name, model in models.items()}


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    if isinstance(model, PreTrainedModel):
        return model(ids, use_cache=False).logits  # the built-in xLSTM breaks backward with its cache
    return model(ids)


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(model: nn.Module, generator: nn.Module | None, length: int, repeats: int, new_tokens: int) -> dict:
    ids = torch.randint(1, VOCAB, (1, length), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        forward = median_seconds(lambda: logits(model, ids), repeats)
    model.train()

    def step():
        logits(model, ids).float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    before = status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident set starts from here
    step()
    peak = status_mib("VmHWM") - before
    training = median_seconds(step, repeats)
    result = {"forward_tokens_per_s": length / forward, "train_tokens_per_s": length / training, "peak_mib": peak}
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
        for name, by_length in results.items():
            points = [(length, by_length[str(length)][key]) for length in lengths if key in by_length[str(length)]]
            if points:
                axis.loglog(*zip(*points), "o-", label=name)
        axis.set(title=title, xlabel="sequence length T")
    axes[0].legend(fontsize=7)
    return figure


def main(argv=None) -> dict:
    parser = study_parser(__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.repeats, args.new_tokens = [64, 128], 1, 2  # the built-in needs multiples of 64
    results = {}
    for name, (model, generator) in contenders(max(args.lengths)).items():
        results[name] = {}
        for length in args.lengths:
            if name == OFFICIAL and length > OFFICIAL_MAX_LENGTH:
                continue
            results[name][str(length)] = measure(model, generator, length, args.repeats, args.new_tokens)
            print(
                f"{name:40} T={length:6}  " + "  ".join(f"{k} {v:,.1f}" for k, v in results[name][str(length)].items())
            )
    publish(args, "speed_scaling", results, lambda results: plot(results, args.lengths))
    return results


if __name__ == "__main__":
    main()
