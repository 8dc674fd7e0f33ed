"""The REST API on the production web server (gunicorn's threaded WSGI workers) with real workers.

The event stream is also tested on the ASGI alternative (gunicorn with uvicorn workers).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from jobs.models import Job
from jobs.services import job_submit
from jobs.services.dispatch import jobs_send
from jobs.services.messages import job_message
from tenants.models import Organization
from tests.actors import release
from tests.e2e.commands import free_port, worker_ready
from tests.integration.api.conftest import make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _poll(
    client: httpx.Client, url: str, statuses: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(url).json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job stayed {job['status']}: {job}")
        time.sleep(0.2)


@pytest.fixture
def live(broker: Any, start_web: Any, start_command: Any, wait_for: Any, request: Any) -> Any:
    tenant = make_tenant("live-school")
    worker = start_command("rundramatiq", "--processes", "1", "--threads", "4")
    web = start_web(asgi=getattr(request, "param", "wsgi") == "asgi")
    worker_ready(worker, wait_for)
    client = httpx.Client(
        base_url=web.url, headers={"Authorization": f"Bearer {tenant.raw_key}"}, timeout=30
    )
    yield client
    client.close()


def test_a_job_submitted_over_http_is_polled_until_it_succeeds(live: httpx.Client) -> None:
    response = live.post(
        "/api/v1/jobs/", json={"type": "diagnostics.echo", "payload": {"message": "over http"}}
    )
    assert response.status_code == 201, response.text

    job = _poll(live, response.headers["Location"], {"succeeded", "failed"})

    assert job["status"] == "succeeded"
    assert job["result"] == {"message": "over http"}
    assert job["attempts"] == 1


@pytest.mark.parametrize("live", ["wsgi", "asgi"], indirect=True)
def test_the_sse_stream_shows_queued_then_running_then_succeeded(live: httpx.Client) -> None:
    # Each status lasts until the stream has shown it: the job is delayed (queued) until
    # the test sends it, then held (running) until the test releases it.
    job = job_submit(
        job_type="tests.hold",
        payload={"key": "sse"},
        organization=Organization.objects.get(slug="live-school"),
        delay=timedelta(hours=1),
    ).job

    statuses: list[str] = []
    try:
        with live.stream(
            "GET", f"/api/v1/jobs/{job.pk}/events/", headers={"Accept": "text/event-stream"}
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event == "status":
                    statuses.append(json.loads(line[len("data: ") :])["status"])
                    if statuses[-1] == "queued":
                        jobs_send([(job_message(job), None)])  # due now
                    elif statuses[-1] == "running":
                        release("sse")
    finally:
        release("sse")

    assert statuses == ["queued", "running", "succeeded"]


def test_a_failed_job_retried_over_http_succeeds(live: httpx.Client) -> None:
    # diagnostics.echo has 3 retries: failing 4 attempts exhausts them; the 5th succeeds.
    created = live.post(
        "/api/v1/jobs/",
        json={"type": "diagnostics.echo", "payload": {"message": "flaky", "fail_times": 4}},
    ).json()
    failed = _poll(live, created["url"], {"failed", "succeeded"})
    assert failed["status"] == "failed", failed
    assert failed["error"]["type"]

    retried = live.post(f"/api/v1/jobs/{created['id']}/retry/")
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"

    job = _poll(live, created["url"], {"succeeded", "failed"})
    assert job["status"] == "succeeded"
    assert job["result"] == {"message": "flaky"}
    assert job["error"] is None


def test_with_postgres_down_the_api_answers_503_with_retry_after_and_healthz_stays_up(
    start_web: Any,
) -> None:
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/nothing"
    web = start_web(DATABASE_URL=dead)
    headers = {"Authorization": "Bearer tbx_abcd1234_secret"}

    listing = httpx.get(f"{web.url}/api/v1/jobs/", headers=headers, timeout=30)
    submit = httpx.post(
        f"{web.url}/api/v1/jobs/",
        headers=headers,
        json={"type": "diagnostics.echo", "payload": {"message": "x"}},
        timeout=30,
    )
    ready = httpx.get(f"{web.url}/readyz", timeout=30)

    for response in (listing, submit):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "database_unavailable"
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert ready.json()["checks"]["postgres"].startswith("unavailable")
    assert httpx.get(f"{web.url}/healthz", timeout=30).status_code == 200


def test_with_redis_down_readyz_answers_503_and_a_submission_is_never_half_made(
    start_web: Any,
) -> None:
    tenant = make_tenant("redis-down-school")
    web = start_web(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    ready = httpx.get(f"{web.url}/readyz", timeout=30)
    submit = httpx.post(
        f"{web.url}/api/v1/jobs/",
        headers={"Authorization": f"Bearer {tenant.raw_key}"},
        json={"type": "diagnostics.echo", "payload": {"message": "x"}},
        timeout=30,
    )

    assert ready.status_code == 503
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "unavailable (ConnectionError)"}
    # Either the row exists (queued, for the recovery loop to send) or nothing was created.
    jobs = Job.objects.filter(organization=tenant.organization)
    if submit.status_code == 201:
        assert [str(j.pk) for j in jobs] == [submit.json()["id"]]
        assert jobs[0].status == "queued"
    else:
        assert submit.status_code == 503, submit.text
        assert "Retry-After" in submit.headers
        assert not jobs.exists()
