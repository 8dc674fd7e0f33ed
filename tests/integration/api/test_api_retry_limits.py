"""An API retry costs what a submission costs, and never skips a job's delay."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest

from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from tests.integration.api.conftest import make_tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ECHO = {"type": "diagnostics.echo", "payload": {"message": "again"}}


def _messages_in_redis(broker: Any) -> int:
    """Messages Redis holds, on every queue and delay queue."""
    return sum(int(broker.client.hlen(key)) for key in broker.client.scan_iter("*.msgs"))


def test_retrying_cancelled_delayed_jobs_with_the_quota_used_up_gets_429_and_changes_nothing(
    broker: Any,
) -> None:
    tenant = make_tenant("capped", monthly_job_quota=5)
    ids = []
    for _ in range(5):
        created = tenant.client.post(
            "/api/v1/jobs/", {**ECHO, "delay_seconds": 3600}, format="json"
        )
        assert created.status_code == 201
        ids.append(created.json()["id"])
        assert tenant.client.post(f"/api/v1/jobs/{ids[-1]}/cancel/").status_code == 200
    sent = _messages_in_redis(broker)

    for job_id in ids:
        refused = tenant.client.post(f"/api/v1/jobs/{job_id}/retry/")
        assert refused.status_code == 429, refused.content
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert int(refused.headers["Retry-After"]) > 0

    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        JobStatus.CANCELLED
    }
    assert not JobEvent.objects.filter(kind=JobEventKind.RETRIED).exists()
    assert _messages_in_redis(broker) == sent, "a refused retry sent nothing"


def test_an_api_retry_takes_one_submission_from_the_rate_limit(broker: Any) -> None:
    tenant = make_tenant("slow", max_submissions_per_minute=2)
    job_id = tenant.client.post("/api/v1/jobs/", ECHO, format="json").json()["id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.FAILED)

    assert tenant.client.post(f"/api/v1/jobs/{job_id}/retry/").status_code == 200
    Job.objects.filter(pk=job_id).update(status=JobStatus.FAILED)
    refused_retry = tenant.client.post(f"/api/v1/jobs/{job_id}/retry/")
    refused_submission = tenant.client.post("/api/v1/jobs/", ECHO, format="json")

    assert refused_retry.status_code == 429
    assert refused_retry.json()["error"]["code"] == "rate_limited"
    assert int(refused_retry.headers["Retry-After"]) >= 1
    assert Job.objects.get(pk=job_id).status == JobStatus.FAILED
    assert refused_submission.status_code == 429, "the retry used the second submission"


def test_a_cancelled_delayed_job_retried_through_the_api_still_waits_for_its_time(
    worker: dramatiq.Worker, wait_for: Any
) -> None:
    tenant = make_tenant("patient")
    job_id = tenant.client.post(
        "/api/v1/jobs/", {**ECHO, "delay_seconds": 2}, format="json"
    ).json()["id"]
    assert tenant.client.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 200

    retried = tenant.client.post(f"/api/v1/jobs/{job_id}/retry/")

    assert retried.status_code == 200
    assert retried.json()["status"] == "queued"
    job = wait_for(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED).first(), timeout=20
    )
    assert job.scheduled_for is not None and job.started_at is not None
    assert job.started_at >= job.scheduled_for, "the retry skipped the job's delay"
    assert job.attempts == 1
