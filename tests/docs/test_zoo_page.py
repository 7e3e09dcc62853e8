"""docs/zoo.md's table is the one scripts/zoo_docs.py writes from the metadata shipped beside the zoo's weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def zoo_docs():
    spec = importlib.util.spec_from_file_location("zoo_docs", ROOT / "scripts" / "zoo_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_zoo_page_lists_every_model_as_its_metadata_says() -> None:
    page = (ROOT / "docs" / "zoo.md").read_text()
    assert zoo_docs().render(page) == page, "docs/zoo.md is out of date: run python scripts/zoo_docs.py"


def test_a_stale_table_is_found() -> None:
    module = zoo_docs()
    page = (ROOT / "docs" / "zoo.md").read_text()
    stale = page.replace("92.29%", "93.29%")
    assert stale != page and module.render(stale) != stale
    with pytest.raises(ValueError, match="markers"):
        module.render("# no table here\n")
