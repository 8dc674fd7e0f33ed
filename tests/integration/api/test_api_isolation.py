"""With organization A's key, organization B's jobs do not exist, on every endpoint.

The sweep reads the operations from the served OpenAPI schema, so an endpoint
added later is swept too; one whose path parameter the sweep cannot fill
fails the test rather than being skipped.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from jobs.models import Job, JobEvent, JobStatus
from jobs.selectors.dead_letters import group_key, normalise_error_message
from jobs.services import job_submit
from tenants.models import ApiScope, Organization
from tests.factories import JobFactory
from tests.integration.api.conftest import Tenant, key_client
from tests.integration.api.openapi import Operation, api_operations

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: Path parameters that name a job, and so take the other organization's job ids.
JOB_ID_PARAMETERS = ("job_id", "task_id")
#: Path parameters that name a dead-letter group, and so take the other organization's groups.
GROUP_ID_PARAMETERS = ("group_id",)
#: The code of the 404 that each kind of path parameter gets.
NOT_FOUND_CODES = {
    **{name: "job_not_found" for name in JOB_ID_PARAMETERS},
    **{name: "dead_letter_group_not_found" for name in GROUP_ID_PARAMETERS},
}


def _fill(job: Job) -> dict[str, str]:
    """Every path parameter the sweep knows, filled with ``job``'s id or its dead-letter group.

    A job that is not a dead letter has no group: a hex string of its id takes the group's place.
    """
    group = job.pk.hex[:16]
    if job.dead_lettered_at is not None:
        message = normalise_error_message(job.error_message)
        group = group_key(job_type=job.job_type, error_type=job.error_type, message=message)
    values = {name: str(job.pk) for name in JOB_ID_PARAMETERS}
    values.update({name: group for name in GROUP_ID_PARAMETERS})
    return values


def _every_scope(tenant: Tenant) -> Any:
    """A client of ``tenant`` whose key holds every scope, so no call stops at a 403."""
    return key_client(tenant, *ApiScope.values, name="every-scope")[0]


def _secret(label: str) -> str:
    return f"b-{label}-{uuid.uuid4().hex}"


def _b_jobs(organization: Organization) -> dict[str, Job]:
    """One of B's jobs in every state, each carrying values found nowhere else."""
    now = timezone.now()
    states: dict[str, dict[str, Any]] = {
        "queued": {"status": JobStatus.QUEUED},
        "delayed": {"status": JobStatus.QUEUED, "scheduled_for": now + timedelta(hours=1)},
        "running": {"status": JobStatus.RUNNING, "attempts": 1, "started_at": now},
        "retrying": {"status": JobStatus.RETRYING, "attempts": 1, "started_at": now},
        "succeeded": {"status": JobStatus.SUCCEEDED, "attempts": 1, "finished_at": now},
        "failed": {
            "status": JobStatus.FAILED,
            "attempts": 1,
            "finished_at": now,
            "dead_lettered_at": now,
        },
        "cancelled": {"status": JobStatus.CANCELLED, "finished_at": now},
    }
    return {
        label: JobFactory.create(
            organization=organization,
            payload={"message": _secret(f"payload-{label}")},
            result={"echo": _secret(f"result-{label}")},
            error_message=_secret(f"error-{label}"),
            progress_message=_secret(f"progress-{label}"),
            **fields,
        )
        for label, fields in states.items()
    }


def _secrets(job: Job) -> list[str]:
    return [
        str(job.pk),
        job.pk.hex,
        str(job.payload["message"]),
        str((job.result or {})["echo"]),
        job.error_message,
        job.progress_message,
    ]


def _messages_in_redis(broker: RedisBroker) -> int:
    return sum(int(broker.client.hlen(key)) for key in broker.client.scan_iter("*.msgs"))


def test_every_operation_with_a_path_id_answers_404_for_another_organizations_jobs(
    broker: RedisBroker, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    b_jobs = _b_jobs(tenant_b.organization)
    before = {label: Job.objects.filter(pk=job.pk).values().get() for label, job in b_jobs.items()}
    operations = [op for op in api_operations() if op.path_params]
    assert len(operations) >= 8, operations
    client = _every_scope(tenant_a)

    for operation in operations:
        for label, job in b_jobs.items():
            url = operation.url(_fill(job))
            response = operation.call(client, url)

            where = f"{operation.method.upper()} {operation.path} with B's {label} job"
            assert response.status_code == 404, f"{where}: {response.status_code}"
            expected = NOT_FOUND_CODES[operation.path_params[0]]
            assert response.json()["error"]["code"] == expected, where
            body = response.content.decode()
            leaked = [secret for secret in _secrets(job) if secret in body]
            assert not leaked, f"{where} answered {leaked}"

    after = {label: Job.objects.filter(pk=job.pk).values().get() for label, job in b_jobs.items()}
    assert after == before, "a call changed one of B's jobs"
    assert not JobEvent.objects.exists()
    assert _messages_in_redis(broker) == 0


def test_the_sweep_fails_on_a_path_parameter_it_cannot_fill() -> None:
    added_later = Operation(
        method="get", path="/api/v1/things/{thing_id}/", path_params=("thing_id",), has_body=False
    )

    with pytest.raises(AssertionError, match="thing_id"):
        added_later.url({name: "x" for name in (*JOB_ID_PARAMETERS, *GROUP_ID_PARAMETERS)})


def test_another_organizations_job_answers_exactly_like_an_unknown_one(
    broker: RedisBroker, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    theirs = _b_jobs(tenant_b.organization)["failed"]
    unknown = {name: str(uuid.uuid4()) for name in JOB_ID_PARAMETERS}
    unknown.update({name: uuid.uuid4().hex[:16] for name in GROUP_ID_PARAMETERS})
    client = _every_scope(tenant_a)

    for operation in [op for op in api_operations() if op.path_params]:
        answers = [
            operation.call(client, operation.url(values)) for values in (_fill(theirs), unknown)
        ]
        where = f"{operation.method.upper()} {operation.path}"
        assert answers[0].status_code == answers[1].status_code == 404, where
        assert answers[0].content == answers[1].content, where


def test_no_list_includes_another_organizations_or_system_jobs(
    broker: RedisBroker, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    b_jobs = _b_jobs(tenant_b.organization)
    job_submit(job_type="diagnostics.echo", payload={"message": "system"})
    mine = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": {"message": "a"}}, format="json"
    ).json()["id"]

    for query in ({}, {"status": "queued"}, {"type": "diagnostics.echo"}, {"queue": "default"}):
        response = tenant_a.client.get("/api/v1/jobs/", query)
        assert [j["id"] for j in response.json()["results"]] == [mine]
        body = response.content.decode()
        assert not [s for job in b_jobs.values() for s in _secrets(job) if s in body]
    dead = tenant_a.client.get("/api/v1/dead-letters/")
    assert dead.status_code == 200 and dead.json() == {"results": []}


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
