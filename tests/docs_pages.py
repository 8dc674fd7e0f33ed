"""The code blocks of README.md and the docs site's pages, for the tests that keep them true.

A block is run by the docs tests unless the line before its fence says why not::

    <!-- snippet: skip (a module of an app the test project does not have) -->

and the line after a Python block may state what must come true once it ran (polled
until it holds, so a job the block submitted has time to run)::

    <!-- snippet: expect Job.objects.get(pk=job.pk).status == "succeeded" -->
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
SKIP = re.compile(r"^\s*<!-- snippet: skip \((?P<reason>.+)\) -->\s*$")
EXPECT = re.compile(r"^\s*<!-- snippet: expect (?P<expr>.+) -->\s*$")


@dataclass
class Block:
    """One fenced code block of a page.

    Parameters:
      page: the page's path, relative to the repository root.
      line: the line number of the opening fence (1-based).
      lang: the fence's language (``python``, ``bash``, ``json``, ``text``, ...).
      code: the block's text, without the fences and their indentation.
      skip: why the docs tests do not run it, when the page says so.
      expect: a Python expression that must come true after the block ran.
      output: the block right after it (its documented output), if any.
    """

    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    expect: str | None = None
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every page of the docs site."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks, in order, with their markers and outputs."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    previous_end = -2  # the line index of the closing fence of the previous block
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end] != f"{indent}```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page}:{index + 1}: the code block is never closed.")
        code = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        block = Block(
            page=str(page.relative_to(ROOT)), line=index + 1, lang=opening["lang"], code=code
        )
        if index > 0 and (skip := SKIP.match(lines[index - 1])):
            block.skip = skip["reason"]
        if end + 1 < len(lines) and (expect := EXPECT.match(lines[end + 1])):
            block.expect = expect["expr"]
        if found and previous_end == index - 1:
            found[-1].output = block
        found.append(block)
        previous_end = end
        index = end + 1
    return found


def all_blocks(lang: str) -> list[Block]:
    """Every block of one language on every page."""
    return [block for page in pages() for block in blocks(page) if block.lang == lang]
