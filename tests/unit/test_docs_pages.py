"""README.md and the docs pages stay true: the front door stays short, every example
either runs in the suite or says why not, and every module, file, model and check
the pages name exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps

import bench.report
from tests.docs_pages import DOCS, EXPECT, ROOT, SKIP, all_blocks, blocks, pages

_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"^(?:jobs|tenants|toolboxai|scripts|tests|bench|templates|docs)/[\w./-]+$")
_DOTTED = re.compile(r"^((?:jobs|tenants|toolboxai)(?:\.\w+)+)(?:\(.*\))?$")
_CHECK_ID = re.compile(r"^(?:jobs|tenants)\.[EWI]\d{3}$")


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (their contents are checked by running them)."""
    text = page.read_text()
    return re.sub(r"^(\s*)```.*?^\1```", "", text, flags=re.MULTILINE | re.DOTALL)


def _permissions() -> set[str]:
    names: set[str] = set()
    for label in ("jobs", "tenants"):
        for model in apps.get_app_config(label).get_models():
            opts = model._meta
            names.update(f"{label}.{codename}" for codename, _ in opts.permissions)
            names.update(
                f"{label}.{action}_{opts.model_name}" for action in opts.default_permissions
            )
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _named_in_code(token: str) -> bool:
    """Whether an inline-code token that looks like a project name names something real."""
    if _PATH.match(token):
        return (ROOT / token).exists()
    if _CHECK_ID.match(token):
        sources = [*(ROOT / "jobs").rglob("*.py"), *(ROOT / "tenants").rglob("*.py")]
        return any(f'id="{token}"' in path.read_text() for path in sources)
    match = _DOTTED.match(token)
    if match is None:
        return True  # not a name of ours
    dotted = match.group(1)
    if _resolves(dotted):
        return True
    label, _, rest = dotted.partition(".")
    if "." not in rest:
        try:
            apps.get_model(label, rest)
            return True
        except LookupError:
            pass
    return dotted in _permissions()


def test_the_readme_is_a_front_door_with_the_two_commands_on_its_first_screen() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()

    assert len(lines) <= 250
    first_screen = "\n".join(lines[:60])
    assert "make run" in first_screen and "make test" in first_screen
    headings = [line for line in lines if line.startswith("#")]
    for notebook in ("Benchmark", "Latest results", "What the profiles showed", "Configuration"):
        assert not any(notebook in heading for heading in headings), notebook
    for remark in ("load average", "other engineers", "shared machine", "while other"):
        assert remark not in "\n".join(lines), remark


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_file_model_and_check_a_page_names_exists(page: Path) -> None:
    missing = sorted(
        {token for token in _INLINE_CODE.findall(_prose(page)) if not _named_in_code(token)}
    )

    assert missing == [], f"{page.relative_to(ROOT)} names what the code does not have"


def test_every_snippet_marker_is_one_the_docs_tests_read() -> None:
    markers = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in pages()
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        if "<!-- snippet" in line and not (SKIP.match(line) or EXPECT.match(line))
    ]

    assert markers == [], "use <!-- snippet: skip (why) --> or <!-- snippet: expect EXPR -->"


def test_every_python_example_compiles_and_a_skipped_one_says_why() -> None:
    python = all_blocks("python")

    assert len([b for b in python if b.skip is None]) >= 10  # the examples the suite runs
    for block in python:
        compile(block.code, block.where, "exec")
        assert block.skip is None or block.skip.strip(), block.where


def test_every_curl_example_runs_against_the_test_server_or_says_why_not() -> None:
    curls = [b for b in all_blocks("bash") if re.search(r"^\s*curl ", b.code, re.MULTILINE)]

    assert len([b for b in curls if b.skip is None]) >= 10
    for block in curls:
        assert block.skip is not None or "$TBX/" in block.code or '"$TBX/' in block.code, (
            f"{block.where}: a curl example uses $TBX (the suite runs it) or says why not"
        )


def test_the_performance_page_keeps_the_markers_make_bench_rewrites() -> None:
    page = bench.report.DOCS.read_text()

    assert bench.report.DOCS == DOCS / "performance.md"
    assert page.count(bench.report.DOCS_START) == 1
    assert page.count(bench.report.DOCS_END) == 1
    assert page.index(bench.report.DOCS_START) < page.index(bench.report.DOCS_END)


def test_the_docs_site_shows_the_admin_screenshots_and_the_lifecycle_diagram() -> None:
    admin = (DOCS / "admin.md").read_text()
    for picture in ("job-list", "job-detail", "dashboard", "dead-letters"):
        assert f"](img/admin-{picture}.png)" in admin
        assert (DOCS / "img" / f"admin-{picture}.png").stat().st_size > 10_000
    diagrams = [b for b in blocks(DOCS / "architecture.md") if b.lang == "mermaid"]
    assert len(diagrams) == 1
    assert all(
        f"--> {status}" in diagrams[0].code
        for status in ("queued", "running", "retrying", "succeeded", "failed", "cancelled")
    )
