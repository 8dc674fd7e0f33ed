"""The API shows payloads, results, errors and progress messages redacted, as the admin does."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from jobs.models import Job, JobStatus
from jobs.redaction import REDACTED
from jobs.services import job_submit
from tenants.models import Membership
from tests.actors import release
from tests.integration.api.conftest import Tenant
from tests.integration.api.test_api_events import parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: An API key as it would appear in free text; its prefix is public, the rest secret.
RAW_KEY = "tbx_0a1b2c3d_S3cretKeyMaterial0123"

PAYLOAD = {
    "kwargs": {"password": "hunter2-pw", "nested": [{"api_key": "k-apikey-1"}]},
    "authorization": "Bearer abcdefgh12345678",
    "credentials": {"user": "cred-user-7"},
    "note": f"use {RAW_KEY}",
    "max_tokens": 100,
}
PAYLOAD_SHOWN = {
    "kwargs": {"password": REDACTED, "nested": [{"api_key": REDACTED}]},
    "authorization": REDACTED,
    "credentials": REDACTED,
    "note": f"use tbx_0a1b2c3d_{REDACTED}",
    "max_tokens": 100,
}
RESULT = {"access_token": "at-secret-9", "text": "login db_pass=hunter3-pw ok", "count": 2}
RESULT_SHOWN = {"access_token": REDACTED, "text": f"login db_pass={REDACTED} ok", "count": 2}
ERROR_MESSAGE = f"connect failed: password=hunter4-pw with {RAW_KEY}"
ERROR_SHOWN = {
    "type": "ConnectError",
    "message": f"connect failed: password={REDACTED} with tbx_0a1b2c3d_{REDACTED}",
}

PROGRESS_MESSAGE = f"logged in with password=hunter5-pw, now syncing with {RAW_KEY}"
PROGRESS_SHOWN = f"logged in with password={REDACTED}, now syncing with tbx_0a1b2c3d_{REDACTED}"

SECRETS = (
    "hunter5-pw",
    "hunter2-pw",
    "k-apikey-1",
    "abcdefgh12345678",
    "S3cretKeyMaterial0123",
    "at-secret-9",
    "hunter3-pw",
    "hunter4-pw",
    "cred-user-7",
)


def _assert_no_secret(body: str) -> None:
    leaked = [secret for secret in SECRETS if secret in body]
    assert not leaked, f"{leaked} in {body[:2000]}"


def _succeeded(tenant: Tenant) -> Job:
    now = timezone.now()
    return Job.objects.create(
        organization=tenant.organization,
        job_type="diagnostics.echo",
        queue="default",
        status=JobStatus.SUCCEEDED,
        payload=PAYLOAD,
        result=RESULT,
        started_at=now,
        finished_at=now,
    )


def _failed(tenant: Tenant) -> Job:
    now = timezone.now()
    return Job.objects.create(
        organization=tenant.organization,
        job_type="diagnostics.echo",
        queue="default",
        status=JobStatus.FAILED,
        payload=PAYLOAD,
        error_type="ConnectError",
        error_message=ERROR_MESSAGE,
        error_traceback=f"Traceback ...\nConnectError: {ERROR_MESSAGE}",
        started_at=now,
        finished_at=now,
    )


def test_the_job_detail_and_list_show_payload_result_and_error_redacted(tenant_a: Tenant) -> None:
    succeeded, failed = _succeeded(tenant_a), _failed(tenant_a)

    shown_succeeded = tenant_a.client.get(f"/api/v1/jobs/{succeeded.pk}/")
    shown_failed = tenant_a.client.get(f"/api/v1/jobs/{failed.pk}/")
    listed = tenant_a.client.get("/api/v1/jobs/")

    for response in (shown_succeeded, shown_failed, listed):
        assert response.status_code == 200
        _assert_no_secret(response.content.decode())
    assert shown_succeeded.json()["payload"] == PAYLOAD_SHOWN
    assert shown_succeeded.json()["result"] == RESULT_SHOWN
    assert shown_failed.json()["error"] == ERROR_SHOWN
    rows = {row["id"]: row for row in listed.json()["results"]}
    assert rows[str(succeeded.pk)]["result"] == RESULT_SHOWN
    assert rows[str(failed.pk)]["error"] == ERROR_SHOWN
    # The ledger keeps the values as submitted: only what is shown is redacted.
    succeeded.refresh_from_db()
    assert succeeded.payload == PAYLOAD


def test_submissions_answer_with_the_payload_redacted(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    message = f"my key is {RAW_KEY}, password=hunter2-pw"
    shown = f"my key is tbx_0a1b2c3d_{REDACTED}, password={REDACTED}"

    single = tenant_a.client.post(
        "/api/v1/jobs/",
        {"type": "diagnostics.echo", "payload": {"message": message}},
        format="json",
    )
    batch = tenant_a.client.post(
        "/api/v1/jobs/batch/",
        {"jobs": [{"type": "diagnostics.echo", "payload": {"message": message}}] * 2},
        format="json",
    )

    assert single.status_code == 201, single.json()
    assert batch.status_code == 201, batch.json()
    _assert_no_secret(single.content.decode() + batch.content.decode())
    assert single.json()["payload"] == {"message": shown, "sleep_seconds": 0.0, "fail_times": 0}
    assert [job["payload"]["message"] for job in batch.json()["jobs"]] == [shown, shown]
    assert Job.objects.get(pk=single.json()["id"]).payload["message"] == message


def test_the_celery_task_status_shows_result_and_error_redacted(tenant_a: Tenant) -> None:
    succeeded, failed = _succeeded(tenant_a), _failed(tenant_a)

    success = tenant_a.client.get(f"/api/v1/tasks/status/{succeeded.pk}")
    failure = tenant_a.client.get(f"/api/v1/tasks/status/{failed.pk}")

    _assert_no_secret(success.content.decode() + failure.content.decode())
    assert success.json() == {
        "task_id": str(succeeded.pk),
        "status": "SUCCESS",
        "result": RESULT_SHOWN,
        "info": RESULT_SHOWN,
    }
    assert failure.json() == {
        "task_id": str(failed.pk),
        "status": "FAILURE",
        "result": None,
        "info": ERROR_SHOWN,
    }


def test_the_event_stream_status_event_shows_the_job_redacted(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    failed = _failed(tenant_a)

    response = tenant_a.client.get(f"/api/v1/jobs/{failed.pk}/events/")

    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    _assert_no_secret(body)
    ((name, data),) = parse_sse(body.encode())
    assert name == "status"
    assert (data["payload"], data["error"]) == (PAYLOAD_SHOWN, ERROR_SHOWN)


def test_partial_results_on_the_event_stream_are_redacted_like_the_result(
    worker: dramatiq.Worker, tenant_a: Tenant
) -> None:
    chunks = ["Your login: ", "password=hunter2-pw", f" and key {RAW_KEY}"]
    job = job_submit(
        job_type="tests.stream_text",
        payload={"chunks": chunks, "hold_key": "redacted"},
        organization=tenant_a.organization,
    ).job

    response = tenant_a.client.get(f"/api/v1/jobs/{job.pk}/events/")
    # The stream is subscribed to the job's partial results now: let the job publish them.
    for step in range(1, len(chunks) + 1):
        release(f"redacted:{step}")

    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    _assert_no_secret(body)
    events = parse_sse(body.encode())
    partials = [data["text"] for name, data in events if name == "partial"]
    assert partials == ["Your login: ", f"password={REDACTED}", f" and key tbx_0a1b2c3d_{REDACTED}"]
    assert events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["result"] == {"text": "".join(partials)}


def test_a_running_jobs_progress_message_is_redacted_in_the_job_list_and_task_status(
    tenant_a: Tenant,
) -> None:
    running = Job.objects.create(
        organization=tenant_a.organization,
        job_type="diagnostics.echo",
        queue="default",
        status=JobStatus.RUNNING,
        payload={"message": "x"},
        progress=40,
        progress_message=PROGRESS_MESSAGE,
        started_at=timezone.now(),
    )

    shown = tenant_a.client.get(f"/api/v1/jobs/{running.pk}/")
    listed = tenant_a.client.get("/api/v1/jobs/")
    task = tenant_a.client.get(f"/api/v1/tasks/status/{running.pk}")

    for response in (shown, listed, task):
        assert response.status_code == 200
        _assert_no_secret(response.content.decode())
    assert shown.json()["progress_message"] == PROGRESS_SHOWN
    [row] = listed.json()["results"]
    assert row["progress_message"] == PROGRESS_SHOWN
    assert task.json()["info"] == {"progress": 40, "message": PROGRESS_SHOWN}


def test_progress_events_on_the_event_stream_show_the_message_redacted(
    worker: dramatiq.Worker, tenant_a: Tenant
) -> None:
    job = job_submit(
        job_type="tests.hold_progress",
        payload={"key": "progress-redaction", "message": PROGRESS_MESSAGE},
        organization=tenant_a.organization,
    ).job
    response = tenant_a.client.get(f"/api/v1/jobs/{job.pk}/events/")
    chunks = iter(response.streaming_content)  # type: ignore[attr-defined]
    events: list[tuple[str, Any]] = []
    body = ""

    def read_until(name: str, **fields: Any) -> None:
        nonlocal body
        for chunk in chunks:
            body += chunk.decode()
            events.extend(parse_sse(chunk))
            if any(
                event == name and all(data.get(k) == v for k, v in fields.items())
                for event, data in events
            ):
                return
        raise AssertionError(f"the stream ended without a {name} event {fields}: {events}")

    # The report comes while the stream follows the running job: a progress event, not a status.
    read_until("status", status="running")
    release("progress-redaction:progress")
    read_until("progress")
    release("progress-redaction")
    read_until("status", status="succeeded")

    _assert_no_secret(body)
    progress = [data for name, data in events if name == "progress"]
    assert progress == [{"id": str(job.pk), "progress": 50, "message": PROGRESS_SHOWN}]
    assert events[-1][1]["progress_message"] == PROGRESS_SHOWN


def _staff_client(tenant: Tenant) -> Client:
    user = User.objects.create_user("staff-reader", password="pw", is_staff=True)
    Membership.objects.create(user=user, organization=tenant.organization)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    ["/api/v1/jobs/{id}/", "/api/v1/jobs/", "/api/v1/tasks/status/{id}"],
    ids=["detail", "list", "task-status"],
)
def test_the_browsable_api_shows_a_staff_user_the_redacted_values(
    tenant_a: Tenant, path: str
) -> None:
    job = _failed(tenant_a)
    _succeeded(tenant_a)
    client = _staff_client(tenant_a)

    response = client.get(path.format(id=job.pk), {"format": "api"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    _assert_no_secret(page.replace("&quot;", '"'))
    assert REDACTED in page


def test_the_browsable_api_forms_echo_no_job(tenant_a: Tenant) -> None:
    client = _staff_client(tenant_a)
    job = _failed(tenant_a)

    pages = [
        client.get(path, {"format": "api"}).content.decode().replace("&quot;", '"')
        for path in ("/api/v1/jobs/", f"/api/v1/jobs/{job.pk}/cancel/")
    ]

    # The raw-data forms (POST /api/v1/jobs/, POST .../cancel/) start empty: the
    # views have no get_serializer() for DRF to fill them from.
    for page in pages:
        assert 'name="_content"' in page
        _assert_no_secret(page)
