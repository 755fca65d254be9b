"""The examples in their `--quick` mode (seconds each): each runs end to end on its real data, writes its
metrics as JSON and its plots as PNG, and ends with a one-line result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script: (keys of metrics.json, plots)
QUICK_RUNS = {
    "forecast_taylor.py": (
        {"mase", "weighted_quantile_loss", "interval_coverage_10_90", "anomalies"},
        ["forecast.png", "anomalies.png"],
    ),
    "translate_kjv_to_web.py": ({"xlstm", "copy_source", "validation_loss", "examples"}, ["loss.png"]),
    "classify_bible_verses.py": (
        {"xlstm", "bag_of_words_logistic_regression", "majority_class"},
        ["confusion.png"],
    ),
    "classify_gunpoint.py": ({"accuracy", "test_series"}, ["series.png"]),
    "tag_punctuation.py": (
        {"xlstm", "window_logistic_regression", "period_at_the_end", "majority_class", "example"},
        ["loss.png", "confusion.png"],
    ),
}


@pytest.mark.parametrize("script", list(QUICK_RUNS))
def test_example_quick_run(script, tmp_path):
    result = subprocess.run([sys.executable, script, "--quick", "--output-dir", str(tmp_path)], cwd=EXAMPLES,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1].startswith("RESULT")
    keys, plots = QUICK_RUNS[script]
    assert keys <= json.loads((tmp_path / "metrics.json").read_text()).keys()
    for plot in plots:
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
