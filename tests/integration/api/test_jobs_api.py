"""Submitting, listing, reading, cancelling and retrying jobs over the REST API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from jobs.models import Job, JobEvent, JobStatus
from jobs.selectors.queues import queue_stats
from jobs.services import job_submit
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB_FIELDS = {
    "id",
    "type",
    "status",
    "queue",
    "priority",
    "payload",
    "attempts",
    "max_retries",
    "progress",
    "progress_message",
    "result",
    "error",
    "created_at",
    "scheduled_for",
    "started_at",
    "finished_at",
    "url",
}


def _ready_in_redis(queue: str = "default") -> int:
    return next(s.ready for s in queue_stats() if s.queue == queue)


def _submit(tenant: Tenant, **body: Any) -> Any:
    body.setdefault("type", "diagnostics.echo")
    body.setdefault("payload", {"message": "hello"})
    return tenant.client.post("/api/v1/jobs/", body, format="json")


def test_a_job_submitted_over_the_api_is_queued_in_the_ledger_and_in_redis(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    response = _submit(tenant_a, priority=7)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["type"] == "diagnostics.echo"
    assert body["status"] == "queued"
    assert body["priority"] == 7
    assert body["payload"] == {"message": "hello", "sleep_seconds": 0.0, "fail_times": 0}
    assert body["error"] is None
    assert response["Location"] == body["url"]
    assert body["url"] == f"http://testserver/api/v1/jobs/{body['id']}/"
    job = Job.objects.get(pk=body["id"])
    assert job.organization == tenant_a.organization
    assert _ready_in_redis() == 1


def test_the_same_idempotency_key_again_answers_200_with_the_first_job(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    first = _submit(tenant_a, idempotency_key="lesson-42")
    second = _submit(tenant_a, idempotency_key="lesson-42", payload={"message": "other"})

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second["Location"] == first["Location"]
    assert Job.objects.count() == 1
    assert _ready_in_redis() == 1


def test_a_delayed_job_is_scheduled_for_later(broker: RedisBroker, tenant_a: Tenant) -> None:
    response = _submit(tenant_a, delay_seconds=3600)

    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.scheduled_for is not None
    assert timedelta(minutes=59) < job.scheduled_for - job.created_at <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nope.nothing"}, "type"),
        ({"type": "tests.count", "payload": {"key": "x"}}, "type"),
        ({"payload": {}}, "payload.message"),
        ({"payload": {"message": "x", "colour": "red"}}, "payload.colour"),
        ({"payload": {"message": "x", "sleep_seconds": 61}}, "payload.sleep_seconds"),
        ({"payload": "not an object"}, "payload"),
        ({"priority": 11}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"delay_seconds": 7 * 86400 + 1}, "delay_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
    ],
)
def test_an_invalid_submission_answers_400_naming_the_field_and_creates_nothing(
    broker: RedisBroker, tenant_a: Tenant, body: dict[str, Any], field: str
) -> None:
    response = _submit(tenant_a, **body)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["status"] == 400
    assert field in error["fields"], error
    assert error["message"]
    assert Job.objects.count() == 0
    assert _ready_in_redis() == 0


def test_a_batch_is_created_whole_and_answers_201_with_every_job(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    jobs = [{"type": "diagnostics.echo", "payload": {"message": str(i)}} for i in range(25)]

    response = tenant_a.client.post("/api/v1/jobs/batch/", {"jobs": jobs}, format="json")

    assert response.status_code == 201, response.json()
    created = response.json()["jobs"]
    assert [j["payload"]["message"] for j in created] == [str(i) for i in range(25)]
    assert Job.objects.filter(organization=tenant_a.organization).count() == 25
    assert _ready_in_redis() == 25


@pytest.mark.parametrize(
    ("bad_job", "field"),
    [
        ({"type": "diagnostics.echo", "payload": {}}, "jobs.2.payload.message"),
        (
            {"type": "diagnostics.echo", "payload": {"message": "x"}, "priority": 99},
            "jobs.2.priority",
        ),
        ({"type": "unknown.type", "payload": {}}, "jobs.2.type"),
    ],
)
def test_a_batch_with_one_invalid_job_answers_400_naming_its_index_and_creates_nothing(
    broker: RedisBroker, tenant_a: Tenant, bad_job: dict[str, Any], field: str
) -> None:
    jobs: list[dict[str, Any]] = [
        {"type": "diagnostics.echo", "payload": {"message": str(i)}} for i in range(4)
    ]
    jobs[2] = bad_job

    response = tenant_a.client.post("/api/v1/jobs/batch/", {"jobs": jobs}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["index"] == 2
    assert field in error["fields"], error
    assert Job.objects.count() == 0
    assert _ready_in_redis() == 0


def test_a_batch_over_one_thousand_jobs_is_refused(broker: RedisBroker, tenant_a: Tenant) -> None:
    jobs = [{"type": "diagnostics.echo", "payload": {"message": "x"}}] * 1001

    response = tenant_a.client.post("/api/v1/jobs/batch/", {"jobs": jobs}, format="json")

    assert response.status_code == 400
    assert "jobs" in response.json()["error"]["fields"]
    assert Job.objects.count() == 0


def test_the_job_list_is_newest_first_filtered_and_paginated(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    org = tenant_a.organization
    now = timezone.now()
    ids = []
    for minutes in range(5):
        job = job_submit(
            job_type="diagnostics.echo", payload={"message": "x"}, organization=org
        ).job
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(minutes=minutes))
        ids.append(str(job.pk))
    Job.objects.filter(pk=ids[1]).update(status=JobStatus.FAILED)

    page = tenant_a.client.get("/api/v1/jobs/", {"page_size": 2}).json()
    assert [j["id"] for j in page["results"]] == ids[:2]
    second = tenant_a.client.get(page["next"]).json()
    assert [j["id"] for j in second["results"]] == ids[2:4]

    failed = tenant_a.client.get("/api/v1/jobs/", {"status": "failed"}).json()
    assert [j["id"] for j in failed["results"]] == [ids[1]]
    window = tenant_a.client.get(
        "/api/v1/jobs/",
        {
            "created_after": (now - timedelta(minutes=3, seconds=30)).isoformat(),
            "created_before": (now - timedelta(seconds=30)).isoformat(),
        },
    ).json()
    assert [j["id"] for j in window["results"]] == ids[1:4]
    by_type = tenant_a.client.get("/api/v1/jobs/", {"type": "other.type"}).json()
    assert by_type["results"] == []
    by_queue = tenant_a.client.get("/api/v1/jobs/", {"queue": "default"}).json()
    assert len(by_queue["results"]) == 5


def test_an_invalid_list_filter_answers_400_naming_it(tenant_a: Tenant) -> None:
    response = tenant_a.client.get("/api/v1/jobs/", {"status": "lost", "created_after": "soon"})

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status", "created_after"}


def test_a_failed_job_shows_its_error_but_never_its_traceback(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "x"}, organization=tenant_a.organization
    ).job
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        error_type="EchoFailure",
        error_message="boom",
        error_traceback='Traceback (most recent call last):\n  File "secret.py"',
    )

    response = tenant_a.client.get(f"/api/v1/jobs/{job.pk}/")

    assert response.status_code == 200
    assert response.json()["error"] == {"type": "EchoFailure", "message": "boom"}
    assert "Traceback" not in response.content.decode()


def test_cancelling_a_queued_job_answers_200_and_a_finished_one_409(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    job_id = _submit(tenant_a).json()["id"]

    first = tenant_a.client.post(f"/api/v1/jobs/{job_id}/cancel/")
    again = tenant_a.client.post(f"/api/v1/jobs/{job_id}/cancel/")

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"
    event = JobEvent.objects.get(job_id=job_id)
    assert (event.via, event.user) == ("api", tenant_a.api_key.membership.user)


def test_cancelling_a_running_job_requests_a_cooperative_stop(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    job_id = _submit(tenant_a).json()["id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.RUNNING, attempts=1)

    response = tenant_a.client.post(f"/api/v1/jobs/{job_id}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert Job.objects.get(pk=job_id).cancel_requested_at is not None


def test_retrying_a_failed_job_queues_it_again_and_other_statuses_answer_409(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    job_id = _submit(tenant_a).json()["id"]

    queued = tenant_a.client.post(f"/api/v1/jobs/{job_id}/retry/")
    Job.objects.filter(pk=job_id).update(status=JobStatus.FAILED, error_type="X")
    retried = tenant_a.client.post(f"/api/v1/jobs/{job_id}/retry/")

    assert queued.status_code == 409
    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"
    assert retried.json()["error"] is None
    assert _ready_in_redis() == 2


def test_job_types_list_the_public_types_with_their_payload_schema(tenant_a: Tenant) -> None:
    response = tenant_a.client.get("/api/v1/job-types/")

    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()}
    assert "diagnostics.echo" in types
    assert not any(name.startswith("tests.") for name in types)
    echo = types["diagnostics.echo"]
    assert echo["queue"] == "default"
    assert echo["description"]
    schema = echo["payload_schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["message"]
    assert schema["properties"]["fail_times"]["maximum"] == 10
    assert schema["additionalProperties"] is False


def test_consecutive_submissions_on_one_thread_are_each_validated_on_their_own_body(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    bad = _submit(tenant_a, priority=99)
    assert bad.status_code == 400 and "priority" in bad.json()["error"]["fields"]

    good = _submit(tenant_a, priority=3, payload={"message": "second"})
    assert good.status_code == 201, good.json()
    assert good.json()["priority"] == 3 and good.json()["payload"]["message"] == "second"

    plain = _submit(tenant_a)
    assert plain.status_code == 201 and plain.json()["priority"] == 5

    unknown = _submit(tenant_a, type="nope")
    assert unknown.status_code == 400 and "type" in unknown.json()["error"]["fields"]
    assert Job.objects.count() == 2


def test_the_reused_submission_serializer_is_rebuilt_when_the_job_types_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobs.api import serializers, views

    first = views._job_create_serializer({"type": "diagnostics.echo"})
    assert views._job_create_serializer({"type": "diagnostics.echo"}) is first
    names = [*views.public_job_type_names(), "extra.type"]
    monkeypatch.setattr(views, "public_job_type_names", lambda: names)
    monkeypatch.setattr(serializers, "public_job_type_names", lambda: names)
    rebuilt = views._job_create_serializer({"type": "extra.type"})
    assert rebuilt is not first
    assert rebuilt.is_valid(), rebuilt.errors
