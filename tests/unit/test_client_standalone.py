"""The Python client is importable and usable without Django (it is for other codebases)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from toolboxai_jobs_client import Client, MissingScope, RateLimited
from toolboxai_jobs_client.sse import sse_events

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_imports_without_django_or_the_server_packages() -> None:
    code = (
        "import sys\n"
        "for name in ('django', 'jobs', 'tenants', 'toolboxai', 'rest_framework'):\n"
        "    sys.modules[name] = None  # any import of them fails\n"
        "import toolboxai_jobs_client\n"
        "toolboxai_jobs_client.Client('http://127.0.0.1:1', 'tbx_x_y').close()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_an_api_error_becomes_an_exception_with_the_apis_code_and_details() -> None:
    answers = {
        "/api/v1/jobs/": httpx.Response(
            403,
            json={
                "error": {
                    "status": 403,
                    "code": "missing_scope",
                    "message": "This API key lacks the scope 'jobs:write'.",
                    "fields": {},
                    "index": None,
                    "required_scope": "jobs:write",
                }
            },
        ),
        "/api/v1/jobs/batch/": httpx.Response(
            429,
            headers={"Retry-After": "7"},
            json={"error": {"status": 429, "code": "rate_limited", "message": "Slow down."}},
        ),
    }
    transport = httpx.MockTransport(lambda request: answers[request.url.path])

    with Client("http://jobs.test", "tbx_a_b", transport=transport) as jobs:
        with pytest.raises(MissingScope) as refused:
            jobs.submit("diagnostics.echo")
        with pytest.raises(RateLimited) as limited:
            jobs.submit_many([{"type": "diagnostics.echo"}])

    assert (refused.value.status, refused.value.code) == (403, "missing_scope")
    assert refused.value.required_scope == "jobs:write"
    assert (limited.value.code, limited.value.retry_after) == ("rate_limited", 7)
    assert "Slow down." in str(limited.value)


def test_server_sent_events_are_read_across_comments_and_multi_line_data() -> None:
    lines = ["retry: 3000", "", ": heartbeat", "event: status", 'data: {"a":', "data: 1}", ""]

    events = list(sse_events(lines))

    assert [(e.event, e.data) for e in events] == [("status", '{"a":\n1}')]
