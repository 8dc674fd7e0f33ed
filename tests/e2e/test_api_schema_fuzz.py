"""schemathesis fuzzes every operation of the live API against its own OpenAPI schema."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tenants.models import ApiScope
from tests.integration.api.conftest import key_client, make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

#: No 5xx, and every status, content type, header and body as the schema documents.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    broker: Any, start_web: Any, tmp_path: Path
) -> None:
    # A limit no fuzzing run reaches, so 429s do not hide the other answers.
    tenant = make_tenant("fuzz-school", max_submissions_per_minute=1_000_000)
    # Every scope, so replay, purge and the workers are fuzzed past their 403.
    _, raw_key = key_client(tenant, *ApiScope.values, name="fuzz")
    web = start_web(API_EVENTS_MAX_SECONDS="1")

    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{web.url}/api/v1/schema/",
            "--header",
            f"Authorization: Bearer {raw_key}",
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "20261126",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(tmp_path / "events.ndjson"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "passed" in result.stdout
    # Each check really ran on the responses, and none failed.
    statuses = _check_statuses(tmp_path / "events.ndjson")
    for check in CHECKS.split(","):
        assert statuses[check]["success"] >= 100, (check, statuses[check])
        assert set(statuses[check]) <= {"success", "skip"}, (check, statuses[check])


def _check_statuses(events: Path) -> dict[str, Counter[str]]:
    """How often each check ended in each status, from schemathesis's NDJSON event report."""
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    with events.open() as lines:
        for line in lines:
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            for results in (finished["recorder"].get("checks") or {}).values():
                for result in results:
                    statuses[result["name"]][result["status"]] += 1
    return statuses
