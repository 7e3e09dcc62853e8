"""Every relative link and anchor of README.md and docs/ resolves: to a file of the repository, and an anchor to a
heading of the target page as GitHub names it. Links to the web are not followed (no network in the tests)."""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import codeblocks

LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"`[^`]*`")
EXTERNAL = ("http://", "https://", "mailto:")


def prose(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines of ``page`` outside fenced blocks, inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, INLINE_CODE.sub("", line)))
    return lines


def slug(title: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_with_code_headings(page):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading["title"])
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def prose_with_code_headings(page: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks, inline code kept (a heading's anchor includes its code words)."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def links(page: Path) -> list[tuple[int, str]]:
    return [(number, match["target"]) for number, line in prose(page) for match in LINK.finditer(line)
            if not match["target"].startswith(EXTERNAL)]


PAGES = codeblocks.pages()


def problems(page: Path, root: Path = codeblocks.ROOT) -> list[str]:
    found = []
    for number, target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{number}: ({target})"
        if not resolved.exists():
            found.append(f"{where} points at a missing file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            found.append(f"{where}: no heading with anchor #{anchor} in {resolved.name}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(codeblocks.ROOT)) for p in PAGES])
def test_links_resolve(page: Path) -> None:
    assert not problems(page), "\n".join(problems(page))


def test_broken_links_and_anchors_are_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title `code` (x)\n\n## Two words\n\n```bash\n[not](a link.md)\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md) [ok](a.md#two-words) [ok](a.md#title-code-x) [ok](https://example.org/x)\n"
                    "`[code](missing.md)` [bad](missing.md) [bad](a.md#nowhere) ![img](gone.png)\n")
    messages = [m.split(": (", 1)[1] for m in problems(page, tmp_path)]
    assert messages == ["missing.md) points at a missing file",
                        "a.md#nowhere): no heading with anchor #nowhere in a.md",
                        "gone.png) points at a missing file"]


def test_the_readme_maps_every_docs_page() -> None:
    readme = codeblocks.ROOT / "README.md"
    linked = {(readme.parent / target.partition("#")[0]).resolve() for _, target in links(readme)}
    pages = {page.resolve() for page in (codeblocks.ROOT / "docs").glob("*.md") if page.name != "index.md"}
    assert not pages - linked, f"docs pages missing from the README's map: {sorted(p.name for p in pages - linked)}"
