"""`make demo` installs only edgewise's own dependencies (pyproject's `dependencies`): the command line must run
with none of the optional extras importable. A fresh clone's `make demo` failed this way once (the CLI imported
edgewise.exact, which imported scipy, then only a test extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
# Distribution names whose import name differs from the name with '-' read as '_'.
IMPORT_NAMES = {"scikit-image": "skimage", "colour-science": "colour", "adversarial-robustness-toolbox": "art",
                "attackbenchlib": "attackbench", "pytest-timeout": "pytest_timeout"}


def requirement_name(requirement: str) -> str:
    for stop in "<>=![; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def optional_only() -> set[str]:
    """Import names of the packages that only an extra installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    extras = {requirement_name(r) for group in project["optional-dependencies"].values() for r in group}
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in extras - core}


BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (an optional extra, not installed by make demo)")
        return None

BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, Blocked())
from edgewise.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_the_demo_runs_without_any_optional_extra(tmp_path: Path) -> None:
    blocked = optional_only()
    assert {"scikit_image", "skimage"} & blocked and "timm" in blocked and "mkdocs" in blocked
    env = dict({"OMP_NUM_THREADS": "1"}, **os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    for argv in (["models"], ["attack", "--model", "smallcnn-fmnist", "--attack", "ddn", "--steps", "2", "--n", "4",
                              "--out", str(tmp_path / "demo"), "--no-progress"]):
        result = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(sorted(blocked)), *argv], env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"edgewise {' '.join(argv)} needs an optional extra:\n{result.stderr[-2000:]}"
