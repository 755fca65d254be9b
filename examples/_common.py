"""The plumbing the examples share: `--quick` (a seconds-long smoke run on the example's small defaults; flags
given explicitly still win), and figures and metrics written to the output folder."""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the examples run without a screen
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def parse_with_quick(parser: argparse.ArgumentParser, argv: list[str] | None, quick_defaults: dict,
                     quick_help: str = "seconds-long smoke run: tiny model, few steps") -> argparse.Namespace:
    """`parser`'s arguments plus `--quick`, which replaces the defaults by `quick_defaults`."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick_defaults)
        args = parser.parse_args(argv)
    return args


def save_figure(figure: "plt.Figure", path: Path) -> Path:
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_metrics(folder: Path, metrics: dict) -> None:
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
