"""``edgewise models``: list the zoo with its metadata."""

from __future__ import annotations

import argparse
from typing import Any

from edgewise.models import list_models


def register(commands: Any) -> None:
    parser = commands.add_parser("models", help="list the model zoo")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = [(name, meta["architecture"], meta["dataset"], "x".join(map(str, meta["input_shape"])),
             f"{100 * meta['clean_test_accuracy']:.2f}%", meta.get("robustness", "")) for name, meta in
            list_models().items()]
    header = ("name", "architecture", "dataset", "input", "clean acc", "robustness")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0
