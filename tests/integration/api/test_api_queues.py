"""Queues and workers over the API: an organization's backlog, an operator's totals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import JobStatus
from jobs.services import job_submit
from tenants.models import ApiScope, Organization
from tests.actors import release
from tests.factories import JobFactory, staff_user
from tests.integration.api.conftest import key_client, make_tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ECHO = {"type": "diagnostics.echo", "payload": {"message": "waiting"}}


def _by_queue(answer: Any) -> dict[str, dict[str, Any]]:
    assert answer.status_code == 200, answer.content
    return {row["queue"]: row for row in answer.json()["results"]}


def _ledger_backlog(organization: Organization) -> None:
    """One job of ``organization`` in each state that counts, on the default queue."""
    now = timezone.now()
    JobFactory.create(organization=organization, created_at=now - timedelta(seconds=120))
    JobFactory.create(organization=organization, created_at=now - timedelta(seconds=5))
    JobFactory.create(organization=organization, scheduled_for=now + timedelta(hours=1))
    JobFactory.create(organization=organization, status=JobStatus.RETRYING, attempts=1)
    JobFactory.create(organization=organization, status=JobStatus.RUNNING, attempts=1)
    JobFactory.create(
        organization=organization,
        status=JobStatus.FAILED,
        finished_at=now - timedelta(minutes=10),
        dead_lettered_at=now - timedelta(minutes=10),
    )
    JobFactory.create(
        organization=organization,
        status=JobStatus.SUCCEEDED,
        finished_at=now - timedelta(seconds=20),
    )
    JobFactory.create(organization=organization, queue="email", status=JobStatus.CANCELLED)


def test_an_organization_sees_its_own_backlog_and_throughput_from_the_ledger(broker: Any) -> None:
    mine, theirs = make_tenant("school-a"), make_tenant("school-b")
    _ledger_backlog(mine.organization)
    _ledger_backlog(theirs.organization)
    reader, _ = key_client(mine, ApiScope.JOBS_READ)

    answer = reader.get("/api/v1/queues/")

    assert (answer.json()["scope"], answer.json()["organization"]) == ("organization", "school-a")
    default = _by_queue(answer)["default"]
    assert {k: v for k, v in default.items() if k != "oldest_waiting_seconds"} == {
        "queue": "default",
        "ready": 2,
        "delayed": 2,
        "in_flight": 1,
        "dead_lettered": 1,
        "throughput_last_minute": 1,
        "throughput_last_hour": 2,
    }
    assert 119 <= default["oldest_waiting_seconds"] < 3600
    email = _by_queue(answer)["email"]
    assert (email["ready"], email["throughput_last_hour"], email["oldest_waiting_seconds"]) == (
        0,
        0,
        None,
    )


def test_an_ops_key_and_a_superuser_see_every_organizations_totals_from_redis(
    broker: Any,
) -> None:
    a, b = make_tenant("school-a"), make_tenant("school-b")
    for tenant, n in ((a, 2), (b, 3)):
        for _ in range(n):
            assert tenant.client.post("/api/v1/jobs/", ECHO, format="json").status_code == 201
    ops, _ = key_client(a, ApiScope.OPS)
    root = APIClient()
    root.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    staff = APIClient()
    staff.force_login(staff_user("alice", a.organization))

    root.credentials(HTTP_X_ORGANIZATION="school-a")
    for client in (ops, root):
        answer = client.get("/api/v1/queues/")
        assert (answer.json()["scope"], answer.json()["organization"]) == ("all", None)
        assert _by_queue(answer)["default"]["ready"] == 5
    own = staff.get("/api/v1/queues/")
    assert own.json()["scope"] == "organization"
    assert _by_queue(own)["default"]["ready"] == 2


def test_workers_are_listed_with_their_running_jobs_for_ops_keys_only(
    worker: Any, wait_for: Any
) -> None:
    tenant = make_tenant("school")
    ops, _ = key_client(tenant, ApiScope.OPS)
    # Running until the test has seen it: a fixed sleep could end before the listing shows it.
    job_submit(job_type="tests.hold", payload={"key": "busy"}, organization=tenant.organization)

    def busy() -> list[dict[str, Any]]:
        rows = ops.get("/api/v1/workers/").json()["results"]
        return [row for row in rows if row["jobs_in_flight"] == 1]

    try:
        [row] = wait_for(busy, timeout=30)
    finally:
        release("busy")
    assert row["threads"] == 4 and row["pid"] > 0 and row["host"]
    assert row["seconds_since_heartbeat"] < 60
    refused = tenant.client.get("/api/v1/workers/")
    assert refused.status_code == 403
    assert refused.json()["error"]["required_scope"] == "ops"
