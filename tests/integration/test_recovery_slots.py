"""The recovery loop frees running-job slots that finished jobs still hold (a release lost in a failover)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from jobs.models import JobStatus
from jobs.services import job_submit
from jobs.services.recovery import run_once
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.limits import concurrency_acquire, concurrency_holders
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@override_settings(JOBS_OUTBOX_GRACE_MS=600_000)
def test_a_slot_held_by_a_finished_job_is_freed_and_a_running_jobs_slot_kept(
    broker: JobsRedisBroker,
) -> None:
    org = OrganizationFactory.create(slug="slots", max_concurrent_jobs=2)
    finished = JobFactory.create(organization=org, status=JobStatus.SUCCEEDED)
    running = JobFactory.create(organization=org, status=JobStatus.RUNNING)
    job_submit(job_type="diagnostics.echo", payload={"message": "waits"}, organization=org)
    for job in (finished, running):
        assert concurrency_acquire(
            organization_id=org.pk, job_id=str(job.pk), limit=2, lease_ms=600_000
        )

    report = run_once(broker)

    assert report.freed_slots == 1
    assert concurrency_holders([org.pk]) == {org.pk: [str(running.pk)]}


def test_a_failover_to_another_server_sends_the_waiting_jobs_again(
    broker: JobsRedisBroker,
) -> None:
    run_once(broker)  # the marker and this server's run id
    run_once(broker)
    broker.client.hset(f"{broker.namespace}:__recovery__", "hold_until_ms", 0)
    job = job_submit(job_type="diagnostics.echo", payload={"message": "lost in a failover"}).job
    broker.client.set(f"{broker.namespace}:__recovery__.server", "the-old-primary")

    report = run_once(broker)

    assert str(job.pk) in report.reconciled
    assert run_once(broker).reconciled == [], "once reconciled, the next pass does nothing"
