"""docs/architecture.md names the middleware chain exactly as the broker is built."""

from __future__ import annotations

import re
from pathlib import Path

from jobs.broker import build_middleware

ROOT = Path(__file__).resolve().parents[2]


def _documented_chain() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- middleware:start -->")[1].split("<!-- middleware:end -->")[0]
    return re.findall(r"^\d+\. `(\w+)`", block, flags=re.MULTILINE)


def test_the_architecture_page_lists_the_middleware_in_the_order_the_broker_runs_them() -> None:
    built = [type(middleware).__name__ for middleware in build_middleware()]

    assert _documented_chain() == built
