"""The fenced code blocks of README.md and docs/*.md, and how the tests run them (see docs/docs-tests.md).

A block is ```` ```python ````, ```` ```bash ```` (code) or ```` ```text ```` (output, never run). An HTML comment on
the line before the fence changes how a code block is tested:

- ``<!-- test: slow -->``: run only by the slow suite (``pytest -m slow``);
- ``<!-- test: syntax-only: REASON -->``: never run (it needs a GPU, the network, several machines, ...); checked
  by ``bash -n`` / ``compile()``, and every ``edgewise`` command in it is parsed by the CLI's own parser;
- ``<!-- test: continues -->``: run right after the previous code block of the page, in the same folder (a block
  that uses the files the previous one wrote); it is tested as that block is.

Bash blocks run in a fresh folder with ``edgewise``, ``python`` and ``torchrun`` on ``PATH`` replaced by shims that
make every edgewise command tiny (`shrink`): the option names are kept, so a renamed option fails the test.

``python tests/docs/codeblocks.py`` prints how many blocks there are and how each is tested.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_LANGUAGES = ("bash", "python")
OUTPUT_LANGUAGES = ("text",)
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARK = re.compile(r"^\s*<!--\s*test:\s*(?P<mode>slow|syntax-only|continues)(?:\s*:\s*(?P<reason>.*?))?\s*-->\s*$")

# The value each option is capped at in a test run (the smaller of this and the block's value is kept).
CAPS = {"--n": 8, "--samples": 8, "--steps": 3, "--epochs": 1, "--train-samples": 64, "--budget": 20,
        "--time-limit": 5, "--draws": 1, "--repeats": 1}
# Added where a command leaves them at their defaults (which are sized for real runs).
DEFAULTS = {"attack": {"--n": "8", "--steps": "3"}, "benchmark": {"--n": "8", "--steps": "3"},
            "minmax": {"--n": "8", "--steps": "3"}, "exact": {"--n": "2"}}
SEPARATORS = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    mode: str  # "run", "slow", "syntax-only", "continues" or "output"
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(page: Path) -> list[Block]:
    """The fenced blocks of ``page``; a fence without a language, or an unknown one, is a ValueError."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        language = info.split()[0] if info else ""
        if language not in CODE_LANGUAGES + OUTPUT_LANGUAGES:
            raise ValueError(f"{page.relative_to(ROOT)}:{i + 1}: a fenced block needs the language bash, python "
                             f"or text (output), got {info!r}")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and set(lines[j].strip()) == {fence[0]}):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"{page.relative_to(ROOT)}:{i + 1}: the fenced block is never closed")
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = MARK.match(previous)
        if language in OUTPUT_LANGUAGES:
            mode, reason = "output", ""
        elif mark:
            mode, reason = mark["mode"], mark["reason"] or ""
            if mode == "syntax-only" and not reason:
                raise ValueError(f"{page.relative_to(ROOT)}:{i + 1}: syntax-only needs a reason: "
                                 "<!-- test: syntax-only: needs a GPU -->")
        else:
            mode, reason = "run", ""
        blocks.append(Block(page, i + 1, language, "\n".join(body) + "\n", mode, reason))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in parse(page)]


def chains(blocks: list[Block]) -> list[list[Block]]:
    """Code blocks grouped with the blocks that continue them; a chain is tested as its first block's mode says."""
    grouped: list[list[Block]] = []
    for block in blocks:
        if block.mode == "output":
            continue
        if block.mode == "continues":
            if not grouped or grouped[-1][0].page != block.page:
                raise ValueError(f"{block.name}: `continues` needs an earlier code block on the same page")
            grouped[-1].append(block)
        else:
            grouped.append([block])
    return grouped


def shrink(argv: list[str], *, n_option: str = "--n") -> list[str]:
    """``argv`` of an edgewise command with the sizes of `CAPS` capped and those of `DEFAULTS` added where
    missing: the same options, a tiny run. ``n_option``: how the sample count is spelt (``--samples`` under
    torchrun)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, equals, value = token.partition("=")
        if name in CAPS and equals:
            out.append(f"{name}={cap(value, CAPS[name])}")
        elif token in CAPS and i + 1 < len(argv):
            out += [token, cap(argv[i + 1], CAPS[token])]
            i += 1
        else:
            out.append(token)
        i += 1
    given = {token.partition("=")[0] for token in argv}
    if "--samples" in given:
        given.add("--n")
    command = next((token for token in argv if not token.startswith("-")), "")
    for option, value in DEFAULTS.get(command, {}).items():
        if option not in given and "--help" not in given and "-h" not in given:
            out += [n_option if option == "--n" else option, value]
    return out


def cap(value: str, limit: int) -> str:
    """``value`` (a number or a comma list of numbers) with every number capped at ``limit``."""
    def one(part: str) -> str:
        try:
            number = float(part)
        except ValueError:
            return part
        return part if number <= limit else str(limit)

    return ",".join(one(part) for part in value.split(","))


def edgewise_commands(code: str) -> list[list[str]]:
    """The argument lists of every edgewise command in a bash block (``edgewise ...``, ``python -m edgewise ...``,
    ``torchrun ... -m edgewise ...``), without the program name."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        start = 0
        while start < len(tokens):
            end = next((k for k in range(start, len(tokens)) if tokens[k] in SEPARATORS), len(tokens))
            words = tokens[start:end]
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value before a command
                words = words[1:]
            if words and Path(words[0]).name == "edgewise":
                commands.append(words[1:])
            elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "edgewise":
                commands.append(words[words.index("-m") + 2:])
            start = end + 1
    return commands


SHIM = '''#!{python}
"""Test shim for {name}: runs the real program with the sizes of every edgewise command capped."""
import os, sys
sys.path.insert(0, {here!r})
from codeblocks import shim_main
sys.exit(shim_main({name!r}, sys.argv[1:]))
'''


def write_shims(folder: Path) -> None:
    """``edgewise``, ``python`` and ``torchrun`` in ``folder`` (put it first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("edgewise", "python", "python3", "torchrun"):
        path = folder / name
        path.write_text(SHIM.format(python=sys.executable, name=name, here=str(Path(__file__).parent)))
        path.chmod(0o755)


def shim_main(name: str, argv: list[str]) -> int:
    """Replace this process by the real program (so a timeout that kills the block kills the program)."""
    import os

    if name == "edgewise":
        command = [sys.executable, "-m", "edgewise", *shrink(argv)]
    elif name == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", *shrink_after_module(argv, n_option="--samples")]
    else:
        command = [sys.executable, *shrink_after_module(argv)]
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.execv(sys.executable, command)
    return 1


def shrink_after_module(argv: list[str], *, n_option: str = "--n") -> list[str]:
    """``... -m edgewise ARGS`` with ARGS shrunk; anything else unchanged."""
    for k in range(len(argv) - 1):
        if argv[k] == "-m" and argv[k + 1] == "edgewise":
            return [*argv[: k + 2], *shrink(argv[k + 2:], n_option=n_option)]
    return argv


if __name__ == "__main__":
    found = all_blocks()
    counts = Counter((block.language, block.mode) for block in found)
    print(f"{len(found)} fenced blocks in {len(pages())} pages")
    for (language, mode), count in sorted(counts.items()):
        print(f"  {language:7s} {mode:12s} {count}")
    for block in found:
        if block.mode == "syntax-only":
            print(f"  syntax-only {block.name}: {block.reason}")
