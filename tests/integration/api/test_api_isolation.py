"""With organization A's key, organization B's jobs do not exist."""

from __future__ import annotations

import pytest
from dramatiq.brokers.redis import RedisBroker

from jobs.models import Job, JobStatus
from jobs.services import job_submit
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def b_job_id(broker: RedisBroker, tenant_b: Tenant) -> str:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "b"}, organization=tenant_b.organization
    ).job
    return str(job.pk)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/jobs/{id}/"),
        ("post", "/api/v1/jobs/{id}/cancel/"),
        ("post", "/api/v1/jobs/{id}/retry/"),
        ("get", "/api/v1/jobs/{id}/events/"),
        ("get", "/api/v1/tasks/status/{id}"),
    ],
)
def test_every_job_endpoint_answers_404_for_another_organizations_job(
    tenant_a: Tenant, b_job_id: str, method: str, path: str
) -> None:
    Job.objects.filter(pk=b_job_id).update(status=JobStatus.FAILED)

    response = getattr(tenant_a.client, method)(path.format(id=b_job_id))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"
    assert Job.objects.get(pk=b_job_id).status == JobStatus.FAILED


def test_no_list_includes_another_organizations_or_system_jobs(
    tenant_a: Tenant, b_job_id: str
) -> None:
    job_submit(job_type="diagnostics.echo", payload={"message": "system"})
    mine = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": {"message": "a"}}, format="json"
    ).json()["id"]

    for query in ({}, {"status": "queued"}, {"type": "diagnostics.echo"}, {"queue": "default"}):
        results = tenant_a.client.get("/api/v1/jobs/", query).json()["results"]
        assert [j["id"] for j in results] == [mine]


def test_idempotency_keys_belong_to_one_organization(
    broker: RedisBroker, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    body = {"type": "diagnostics.echo", "payload": {"message": "x"}, "idempotency_key": "same"}

    a = tenant_a.client.post("/api/v1/jobs/", body, format="json")
    b = tenant_b.client.post("/api/v1/jobs/", body, format="json")
    b_batch = tenant_b.client.post("/api/v1/jobs/batch/", {"jobs": [body]}, format="json")

    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert b_batch.json()["jobs"][0]["id"] == b.json()["id"]
    assert Job.objects.get(pk=b.json()["id"]).organization == tenant_b.organization
