"""`make docs`: the site builds in mkdocs' strict mode (a broken docstring section, a page missing from the
navigation or an unknown reference fails it)."""

import subprocess
import sys
from pathlib import Path

from ..conftest import require  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    require("mkdocs", "pip install -e '.[docs]'")
    require("mkdocstrings_handlers.python", "pip install -e '.[docs]'")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "reference" / "index.html").is_file()
