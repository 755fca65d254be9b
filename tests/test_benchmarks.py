"""The evidence studies in `benchmarks/` and the CPU speed benchmarks in `scripts/` in their `--quick` mode
(seconds each), so that they never rot: each study trains every contender briefly, writes its JSON and its
plot, and names them on its last line; each speed benchmark prints its table under the machine's CPU model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# study: the contenders its results must list (per task or setting where it has several)
STUDIES = {
    "gradient_flow": {"lstm", "xlstm-s", "xlstm-m", "xlstm-ms"},
    "state_tracking": {"xlstm-s", "xlstm-ms", "xlstm-m", "official-s", "official-ms", "lstm", "llama"},
    "state_tracking_recipes": {"ours, 1 block(s)", "official, 1 block(s)"},
    "mqar": {"xlstm-m", "xlstm-ms", "xlstm-s", "lstm", "gru", "llama", "mamba"},
    "speed_scaling": {"xlstm_hf NeurIPS m-s-m-m", "xlstm_hf Large", "transformers xLSTM (Large)",
                      "official xlstm NeurIPS (vanilla sLSTM)", "torch.nn.LSTM", "Llama (sdpa)"},
    "forecasting": {"seasonal naive", "holt-winters", "xlstm", "patchtst", "lstm"},
    "classification": {"1-nn euclidean", "xlstm-ms", "xlstm-m", "lstm"},
    "language_modelling": {"xlstm", "llama", "mamba", "unigram"},
    "packing": {"padded", "padded, grouped by length", "packed"},
}
FLAT = ("gradient_flow", "speed_scaling", "language_modelling")  # one group of contenders, not one per setting


@pytest.mark.parametrize("study", list(STUDIES))
def test_study_quick_run(study, tmp_path):
    command = [sys.executable, f"{study}.py", "--quick", "--output-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=BENCHMARKS, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1].startswith("RESULT")
    results = json.loads((tmp_path / f"{study}.json").read_text())["results"]
    groups = [results] if study in FLAT else list(results.values())
    assert all(set(group) == STUDIES[study] for group in groups)
    assert (tmp_path / f"{study}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("script", ["bench_cpu", "bench_kernels_cpu", "bench_short_context"])
def test_speed_benchmark_quick_run(script):
    result = subprocess.run([sys.executable, f"{script}.py", "--quick"], cwd=SCRIPTS, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "CPU: " in result.stdout and result.stdout.count("\n|") >= 5  # the table, under the CPU model
