"""Request bodies through the production web server (gunicorn): chunked bodies get a JSON 411,
bodies over API_MAX_BODY_BYTES a JSON 413, and a body under it is read whatever Django's own
default limit says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobs.models import Job
from tests.integration.api.conftest import make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
ECHO = {"type": "diagnostics.echo", "payload": {"message": "hello"}}


def _assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "fields", "index"}
    assert (error["status"], error["code"]) == (status, code)
    return dict(error)


def _chunks(body: bytes, size: int = 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_without_content_length_gets_a_json_411_on_every_write_endpoint(
    broker: Any, start_web: Any
) -> None:
    tenant = make_tenant("chunked-school")
    web = start_web()
    headers = {"Authorization": f"Bearer {tenant.raw_key}", "Content-Type": "application/json"}
    job_id = httpx.post(f"{web.url}/api/v1/jobs/", json=ECHO, headers=headers).json()["id"]
    bodies = {
        "/api/v1/jobs/": ECHO,
        "/api/v1/jobs/batch/": {"jobs": [ECHO]},
        "/api/v1/tasks/submit": {"task_type": "diagnostics.echo", "task_data": {"message": "m"}},
        f"/api/v1/jobs/{job_id}/cancel/": {},
    }

    with httpx.Client(base_url=web.url, headers=headers, timeout=20) as client:
        for path, body in bodies.items():
            response = client.post(path, content=_chunks(json.dumps(body).encode()))
            assert response.request.headers["Transfer-Encoding"] == "chunked"

            error = _assert_json_error(response, 411, "length_required")
            assert "Content-Length" in error["message"], path

        # The connection is still usable after the refusals, and a sized body works.
        assert client.post("/api/v1/jobs/", json=ECHO).status_code == 201
    assert Job.objects.count() == 2
    assert Job.objects.get(pk=job_id).status == "queued"


def test_bodies_over_api_max_body_bytes_get_a_json_413_and_bodies_under_it_are_read(
    broker: Any, start_web: Any
) -> None:
    tenant = make_tenant("big-body-school")
    web = start_web()
    email = {
        "type": "email.send_transactional",
        "payload": {"to_email": "a@example.com", "subject": "s", "html_content": "x" * 199_000},
    }
    three_mib = json.dumps({"jobs": [email] * 16}).encode()
    assert 2.5 * MIB < len(three_mib) < 5 * MIB  # over Django's default limit, under ours

    def post(path: str, body: bytes) -> httpx.Response:
        return httpx.post(
            f"{web.url}{path}",
            content=body,
            headers={
                "Authorization": f"Bearer {tenant.raw_key}",
                "Content-Type": "application/json",
            },
            timeout=30,
        )

    def message_of(size: int) -> bytes:
        return json.dumps({**ECHO, "payload": {"message": "x" * size}}).encode()

    read = post("/api/v1/jobs/batch/", three_mib)
    two_mib = post("/api/v1/jobs/", message_of(2 * MIB))
    over = post("/api/v1/jobs/", message_of(int(5.1 * MIB)))
    far_over = post("/api/v1/jobs/batch/", b"[" * (10 * MIB))

    assert read.status_code == 201, read.text[:500]
    assert len(read.json()["jobs"]) == 16
    _assert_json_error(two_mib, 400, "payload_too_large")
    assert (
        "API_MAX_BODY_BYTES=5242880" in _assert_json_error(over, 413, "body_too_large")["message"]
    )
    _assert_json_error(far_over, 413, "body_too_large")
    assert Job.objects.count() == 16
