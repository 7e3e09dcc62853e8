"""Write the zoo's table in docs/zoo.md from the metadata shipped beside the weights (models/weights/NAME.json).

The table sits between two markers in docs/zoo.md; tests/docs/test_zoo_page.py checks it is current. After adding
a model to the zoo: python scripts/zoo_docs.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgewise.models import ARCHITECTURES, list_models

PAGE = Path(__file__).resolve().parents[1] / "docs" / "zoo.md"
START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def describe_architecture(name: str) -> str:
    """The first sentence of the architecture's docstring, or its name when it has none."""
    doc = (ARCHITECTURES[name].__doc__ or name).strip().splitlines()[0] if name in ARCHITECTURES else name
    return doc.rstrip(".")


def row(name: str, meta: dict[str, Any]) -> str:
    recipe = meta["recipe"]
    options = ", ".join(f"{k} {v}" for k, v in recipe.get("recipe_options", {}).items())
    milestones = ",".join(map(str, recipe.get("lr_milestones", []))) or "-"
    images = f"{recipe['train_samples']:,}" if recipe.get("train_samples") else "all"
    channels = " (gray repeated to 3 channels)" if meta.get("in_channels", 1) == 3 else ""
    return (f"| `{name}` | {describe_architecture(meta['architecture'])}{channels} | "
            f"{'×'.join(map(str, meta['input_shape']))} | {recipe['recipe']} {options}".rstrip() + " | "
            f"{recipe['epochs']} | {recipe['optimizer']} {recipe['lr']} ({milestones}) | "
            f"{recipe.get('init') or 'random'}, {images} | {100 * meta['clean_test_accuracy']:.2f}% | "
            f"`{meta['sha256'][:12]}` |")


def table() -> str:
    zoo = list_models()
    lines = [
        "| name | architecture | input | recipe and options | epochs | optimizer, lr (milestones) "
        "| start, training images | clean test accuracy | sha256 (first 12) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(row(name, meta) for name, meta in zoo.items()),
        "",
        "The commands as they were run (each model's JSON holds the same under `command`; in the CLI of that time",
        "`--model` named the architecture and `--init` the zoo model to start from, today's `--architecture` and",
        "`--model`):",
        "",
        *(f"- `{name}`: `{meta['command']}`" for name, meta in zoo.items()),
    ]
    return "\n".join(lines)


def render(page: str) -> str:
    """``page`` with the text between the markers replaced by the current table."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(page):
        raise ValueError(f"docs/zoo.md must hold the markers {START} and {END}")
    return pattern.sub(lambda _: f"{START}\n{table()}\n{END}", page)


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
    print(f"wrote the zoo table of {PAGE}")
