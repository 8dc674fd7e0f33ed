"""The API's job representation: the hand-written output equals DRF's generic one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from jobs.api.serializers import JobSerializer
from jobs.models import Job, JobStatus
from jobs.redaction import REDACTED
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.django_db]


def _generic(job: Job, context: dict[str, Any]) -> Any:
    # What DRF renders from the declared fields (Serializer.to_representation).
    return serializers.Serializer.to_representation(JobSerializer(job, context=context), job)


def _jobs(tenant: Tenant) -> list[Job]:
    org = tenant.organization
    now = timezone.now()
    return [
        Job.objects.create(organization=org, job_type="diagnostics.echo", queue="default"),
        Job.objects.create(
            organization=org,
            job_type="diagnostics.echo",
            queue="high_priority",
            priority=9,
            payload={"message": "é ✓", "nested": {"n": [1, 2.5, None]}},
            scheduled_for=now + timedelta(hours=1),
            idempotency_key="k",
        ),
        Job.objects.create(
            organization=org,
            job_type="diagnostics.echo",
            queue="default",
            status=JobStatus.SUCCEEDED,
            attempts=2,
            progress=100,
            progress_message="done",
            result={"message": "ok", "items": [1, 2]},
            started_at=now - timedelta(seconds=3, microseconds=17),
            finished_at=now,
        ),
        Job.objects.create(
            organization=org,
            job_type="diagnostics.echo",
            queue="default",
            status=JobStatus.FAILED,
            error_type="ValueError",
            error_message="boom",
            result=None,
        ),
        Job.objects.create(
            organization=org,
            job_type="diagnostics.echo",
            queue="default",
            status=JobStatus.FAILED,
            payload={"kwargs": {"password": "hunter2"}, "note": "db_pass=hunter2"},
            result={"access_token": "t0ken", "items": [{"api_key": "k"}]},
            error_type="ConnectError",
            error_message="password=hunter2",
        ),
    ]


def test_a_job_is_represented_exactly_as_by_its_declared_fields(tenant_a: Tenant) -> None:
    request = APIRequestFactory().get("/api/v1/jobs/", HTTP_HOST="localhost")
    context = {"request": request}
    for job in _jobs(tenant_a):
        job.refresh_from_db()
        fast = JobSerializer(job, context=context).data
        assert dict(fast) == _generic(job, context)
        assert fast["url"] == f"http://localhost/api/v1/jobs/{job.pk}/"
        assert "hunter2" not in str(fast)


def test_both_representations_redact_payload_result_and_error(tenant_a: Tenant) -> None:
    job = _jobs(tenant_a)[-1]
    job.refresh_from_db()
    context = {"request": None}

    for shown in (JobSerializer(job, context=context).data, _generic(job, context)):
        assert shown["payload"] == {
            "kwargs": {"password": REDACTED},
            "note": f"db_pass={REDACTED}",
        }
        assert shown["result"] == {"access_token": REDACTED, "items": [{"api_key": REDACTED}]}
        assert shown["error"] == {"type": "ConnectError", "message": f"password={REDACTED}"}


def test_a_list_of_jobs_gets_each_job_its_own_url(tenant_a: Tenant) -> None:
    jobs = _jobs(tenant_a)

    data = JobSerializer(jobs, many=True, context={"request": None}).data  # type: ignore[arg-type]

    assert [row["url"] for row in data] == [f"/api/v1/jobs/{job.pk}/" for job in jobs]
    assert [row["id"] for row in data] == [str(job.pk) for job in jobs]
