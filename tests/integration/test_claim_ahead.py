"""A worker claims what it fetches, and gives back the claims of what it does not run.

Real Postgres, Redis and Dramatiq workers in this process. A consumer claims
the messages it fetches in the ledger writer's next batch, so a job thread
seldom waits for its claim; a message that then does not run here (put back
at shutdown, deferred, dead-lettered) must leave its row waiting exactly as
before, or the next delivery would find it ``running`` and drop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest

from jobs.middleware.ledger import CANCEL_CHECK_AFTER_SECONDS
from jobs.models import Job, JobAttempt, JobStatus
from jobs.services import job_cancel, job_submit
from jobs.services.fairness import organization_limits
from jobs.services.transitions import job_attempts_release, job_transitions_write
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.limits import concurrency_running
from tests.actors import release, side_effects
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _echo(organization: Any = None, **payload: Any) -> str:
    return str(
        job_submit(
            job_type="diagnostics.echo",
            payload={"message": "m", **payload},
            organization=organization,
        ).job.pk
    )


def _held(key: str, organization: Any = None) -> str:
    return str(
        job_submit(job_type="tests.hold", payload={"key": key}, organization=organization).job.pk
    )


@contextmanager
def _one_waiting_behind(
    broker: JobsRedisBroker, wait_for: Any, slow: str, waiting: list[str]
) -> Iterator[None]:
    """A one-thread worker running ``slow`` (a ``tests.hold`` on key "slow") while one of
    ``waiting`` waits, claimed, behind it.

    One thread, prefetch two: the next message waits in the worker. The
    worker stops (putting back what it did not run) when the block ends; the
    slow job is let go once its thread has been told to stop, so that it takes
    nothing more (Dramatiq puts fetched messages back only after its threads end).
    """
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: Job.objects.get(pk=slow).status == JobStatus.RUNNING)
        wait_for(lambda: Job.objects.filter(pk__in=waiting, status=JobStatus.RUNNING).count() == 1)
        yield
    finally:
        releaser = threading.Thread(target=_release_once_stopping, args=(worker,))
        releaser.start()
        worker.stop(timeout=60_000)
        releaser.join()


def _release_once_stopping(worker: dramatiq.Worker) -> None:
    deadline = time.monotonic() + 30
    while any(thread.running for thread in worker.workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    release("slow")


def test_a_released_claim_leaves_the_row_as_it_was_before_the_claim(broker: Any) -> None:
    fresh, again = _echo(), _echo()
    Job.objects.filter(pk=again).update(status=JobStatus.RETRYING, attempts=1)
    JobAttempt.objects.create(job_id=again, number=1, worker_id="h:1:a", outcome="failed")
    JobAttempt.objects.filter(job_id=again).update(finished_at=Job.objects.get(pk=again).created_at)

    claimed = job_transitions_write(starts=[(fresh, "h:1:a"), (again, "h:1:a")])[1]
    assert claimed == {fresh: 1, again: 2}
    assert job_attempts_release([(fresh, 1), (again, 2)]) == {fresh, again}

    first, retried = Job.objects.get(pk=fresh), Job.objects.get(pk=again)
    assert (first.status, first.attempts, first.started_at) == (JobStatus.QUEUED, 0, None)
    assert not JobAttempt.objects.filter(job_id=fresh).exists()
    assert (retried.status, retried.attempts) == (JobStatus.RETRYING, 1)
    assert list(JobAttempt.objects.filter(job_id=again).values_list("number", flat=True)) == [1]
    # Released twice, or an attempt already closed: nothing changes.
    assert job_attempts_release([(fresh, 1), (again, 1)]) == set()
    assert Job.objects.get(pk=again).attempts == 1


def test_fetched_messages_are_claimed_and_a_stopping_worker_gives_back_those_it_did_not_run(
    broker: JobsRedisBroker, wait_for: Any
) -> None:
    slow = _held("slow")
    waiting = [_echo() for _ in range(3)]
    with _one_waiting_behind(broker, wait_for, slow, waiting):
        assert [type(x).__name__ for x in broker.fetch_listeners] == ["Fairness", "Ledger"]
    assert broker.fetch_listeners == []

    assert Job.objects.get(pk=slow).status == JobStatus.SUCCEEDED
    rows = Job.objects.filter(pk__in=waiting)
    assert {(j.status, j.attempts) for j in rows} == {(JobStatus.QUEUED, 0)}, "given back"
    assert not JobAttempt.objects.filter(job_id__in=waiting).exists()
    assert broker.client.llen(f"{broker.namespace}:default") == 3, "their messages are back"

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: rows.filter(status=JobStatus.SUCCEEDED).count() == 3)
    finally:
        worker.stop(timeout=10_000)
    assert {j.attempts for j in Job.objects.filter(pk__in=waiting)} == {1}, "each ran once"


def test_a_cancel_requested_while_a_claimed_job_waited_in_its_worker_stops_it_before_it_runs(
    broker: JobsRedisBroker, wait_for: Any
) -> None:
    slow = _held("slow")  # held until the one behind it has been cancelled
    waiting = str(job_submit(job_type="tests.count", payload={"key": "waited"}).job.pk)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: Job.objects.get(pk=slow).status == JobStatus.RUNNING)
        wait_for(lambda: Job.objects.get(pk=waiting).status == JobStatus.RUNNING)
        assert Job.objects.get(pk=slow).status == JobStatus.RUNNING, "still behind the slow one"
        claimed_by = time.monotonic()  # it was claimed before this
        job_cancel(job=Job.objects.get(pk=waiting))
        # Only a job that waited past the threshold looks for a cancel before it runs.
        wait_for(lambda: time.monotonic() - claimed_by > CANCEL_CHECK_AFTER_SECONDS + 0.1)
        release("slow")
        wait_for(lambda: Job.objects.get(pk=waiting).status == JobStatus.CANCELLED)
    finally:
        release("slow")
        worker.stop(timeout=10_000)
    assert side_effects().get("tests:runs:waited") is None, "its code never ran"
    assert Job.objects.get(pk=slow).status == JobStatus.SUCCEEDED


def test_fetched_messages_hold_their_organizations_slots_and_give_them_back_when_put_back(
    broker: JobsRedisBroker, wait_for: Any
) -> None:
    org = OrganizationFactory.create(slug="ahead", max_concurrent_jobs=5)
    organization_limits(organization_id=org.pk)  # cached: consumers take slots only then

    slow = _held("slow", org)
    waiting = [_echo(org) for _ in range(3)]
    with _one_waiting_behind(broker, wait_for, slow, waiting):
        # The slow job's slot and the slot of the message waiting behind it.
        assert concurrency_running(organization_id=org.pk) == 2
    wait_for(lambda: concurrency_running(organization_id=org.pk) == 0)
    assert Job.objects.filter(pk__in=waiting, status=JobStatus.QUEUED).count() == 3
