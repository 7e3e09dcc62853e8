"""Every fenced code block of README.md and docs/ is run by the tests, so a renamed option breaks a test instead of
a user. Bash blocks run with every edgewise command made tiny (same options, small --n/--steps); Python blocks run as
they are; blocks marked syntax-only (GPU, network, several machines) are compiled and their edgewise commands parsed
by the CLI's own parser. The conventions: tests/docs/codeblocks.py, docs/docs-tests.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import codeblocks

from edgewise.cli import UsageError, build_parser

TIMEOUT_S = 300


def collected() -> list[list[codeblocks.Block]]:
    """The chains of code blocks, or none when a page cannot be parsed (test_pages_parse then says why)."""
    try:
        return codeblocks.chains(codeblocks.all_blocks())
    except ValueError:
        return []


CHAINS = collected()
CODE = [block for chain in CHAINS for block in chain]
EXECUTED = [pytest.param(chain, id=chain[0].name, marks=[pytest.mark.slow] if chain[0].mode == "slow" else [])
            for chain in CHAINS if chain[0].mode in ("run", "slow")]


def run(block: codeblocks.Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``block`` in ``folder`` with the shims first on PATH and this checkout's sources importable."""
    shims = folder / ".shims"
    codeblocks.write_shims(shims)
    env = dict({"OMP_NUM_THREADS": "1"}, **os.environ)  # one thread: faster than several on a shared machine
    env = dict(env, PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(codeblocks.ROOT / "src"), os.environ.get("PYTHONPATH")])))
    if block.language == "python":
        script = folder / "block.py"
        command = [sys.executable, str(script)]
    else:
        script = folder / "block.sh"
        command = ["bash", "-e", "-o", "pipefail", str(script)]
    script.write_text(block.code)
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)


def test_pages_parse() -> None:
    # raises, naming the page and line, on an unlabelled or unclosed fence or a misplaced mark
    assert codeblocks.chains(codeblocks.all_blocks()), "README.md and docs/ hold no fenced code block"


@pytest.mark.parametrize("chain", EXECUTED)
def test_block_runs(chain: list[codeblocks.Block], tmp_path: Path) -> None:
    for block in chain:
        result = run(block, tmp_path)
        assert result.returncode == 0, (f"{block.name} ({block.language}) exited {result.returncode}:\n"
                                        f"{block.code}\n--- stderr ---\n{result.stderr[-3000:]}")


@pytest.mark.parametrize("block", CODE, ids=[block.name for block in CODE])
def test_block_syntax(block: codeblocks.Block, tmp_path: Path) -> None:
    """Every code block compiles, and every edgewise command in a bash block is accepted by the CLI's parser."""
    if block.language == "python":
        compile(block.code, block.name, "exec")
        return
    script = tmp_path / "block.sh"
    script.write_text(block.code)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"{block.name}: {checked.stderr}"
    for argv in codeblocks.edgewise_commands(block.code):
        try:
            build_parser().parse_args(argv)
        except UsageError as error:
            pytest.fail(f"{block.name}: `edgewise {' '.join(argv)}`: {error}")


def first(language: str, needle: str) -> codeblocks.Block:
    return next(chain[0] for chain in CHAINS if chain[0].mode == "run" and len(chain) == 1
                and chain[0].language == language and needle in chain[0].code)


def test_a_wrong_option_in_a_bash_block_fails(tmp_path: Path) -> None:
    """A copy of a runnable block with one option misspelt fails, both when run and when parsed."""
    block = first("bash", "edgewise attack")
    broken = replace(block, code=block.code.replace("--steps", "--stepz", 1))
    assert broken.code != block.code
    result = run(broken, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--stepz" in result.stderr
    with pytest.raises(UsageError, match="--stepz"):
        for argv in codeblocks.edgewise_commands(broken.code):
            build_parser().parse_args(argv)


def test_a_wrong_keyword_in_a_python_block_fails(tmp_path: Path) -> None:
    block = first("python", "steps=")
    broken = replace(block, code=block.code.replace("steps=", "stepz=", 1))
    result = run(broken, tmp_path)
    assert result.returncode != 0
    assert "stepz" in result.stderr


def test_shrink_keeps_every_option_and_caps_sizes() -> None:
    argv = ["benchmark", "--steps", "100,1000", "--n=1000", "--eps", "0.5,1"]
    assert codeblocks.shrink(argv) == ["benchmark", "--steps", "3,3", "--n=8", "--eps", "0.5,1"]
    assert codeblocks.shrink(["train", "--epochs", "12"]) == ["train", "--epochs", "1"]
    assert codeblocks.shrink(["attack", "--samples", "5"]) == ["attack", "--samples", "5", "--steps", "3"]
    assert codeblocks.shrink(["attack"], n_option="--samples") == ["attack", "--samples", "8", "--steps", "3"]
    assert codeblocks.shrink(["models"]) == ["models"]


def test_edgewise_commands_are_found_in_every_spelling() -> None:
    code = ("OMP_NUM_THREADS=1 edgewise models && edgewise attack --n 2 \\\n    --steps 3  # comment\n"
            "torchrun --standalone --nproc-per-node 2 -m edgewise attack --samples 4\n"
            "python -m edgewise benchmark | tee log\npip install foo\n")
    assert codeblocks.edgewise_commands(code) == [
        ["models"], ["attack", "--n", "2", "--steps", "3"], ["attack", "--samples", "4"], ["benchmark"]]
