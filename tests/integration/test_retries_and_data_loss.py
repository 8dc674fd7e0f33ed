"""A retry is never lost to Redis between its send and the ledger's record of it.

Dramatiq's Retries sends a failed job's retry before the ledger records the job
``retrying``. These tests hold the two cases where that message is gone: Redis
loses its data after the send but before the record is written, and the send
itself fails. Real Postgres and Redis; the recovery pass is the one the loop runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import job_submit, recovery
from jobs.services.outbox import outbox_forget_flush
from jobs.services.recovery import RecoveryReport
from jobs.services.transitions import AttemptEnd, job_attempt_finish, job_attempt_start
from jobs.transport.broker import JobsRedisBroker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run_once(broker: JobsRedisBroker) -> RecoveryReport:
    outbox_forget_flush()  # this process's submissions are complete first
    return recovery.run_once(broker)


@pytest.fixture
def fast(broker: JobsRedisBroker) -> Iterator[JobsRedisBroker]:
    """No outbox grace; the recovery marker in place, as on a Redis that lost nothing yet."""
    with override_settings(JOBS_HEARTBEAT_TIMEOUT_MS=60_000, JOBS_OUTBOX_GRACE_MS=0):
        run_once(broker)
        yield broker


def _retrying(sent_ms: int | None, *, sent: bool = True) -> AttemptEnd:
    return AttemptEnd(
        status=JobStatus.RETRYING,
        outcome=AttemptOutcome.FAILED,
        error_type="ConnectionError",
        error_message="Redis went away",
        retry_sent=sent,
        retry_sent_ms=sent_ms,
    )


def _claimed(broker: JobsRedisBroker, key: str) -> Job:
    job = job_submit(job_type="tests.count", payload={"key": key}, max_retries=2).job
    worker = f"h:1:{broker.broker_id}"
    assert job_attempt_start(job_id=str(job.pk), worker_id=worker).attempt == 1
    return job


def _queued(broker: JobsRedisBroker) -> int:
    return int(broker.client.llen(f"{broker.namespace}:default"))


def test_a_retry_sent_before_a_data_loss_and_recorded_after_it_is_sent_again(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = _claimed(broker, "retry-across-loss")
    broker.client.delete(f"{broker.namespace}:default")  # the first delivery was fetched
    # Retries sends the retry to the Redis about to lose it; the loss comes strictly later.
    sent_ms = int(time.time() * 1000) - 5
    time.sleep(0.01)
    broker.client.flushdb()

    first = run_once(broker)  # the job is running: nothing to re-send yet
    assert first.redis_data_lost and first.reconciled == []
    assert run_once(broker).reconciled == [], "still running: nothing to re-send"

    assert job_attempt_finish(job_id=str(job.pk), attempt=1, end=_retrying(sent_ms))
    second = run_once(broker)

    assert second.reconciled == [str(job.pk)], "the lost retry is sent again"
    assert _queued(broker) == 1
    assert run_once(broker).reconciled == [], "sent once"


def test_a_retry_recorded_unsent_is_relayed_at_the_next_pass(fast: JobsRedisBroker) -> None:
    broker = fast
    job = _claimed(broker, "unsent-retry")
    broker.client.delete(f"{broker.namespace}:default")

    assert job_attempt_finish(
        job_id=str(job.pk), attempt=1, end=_retrying(int(time.time() * 1000), sent=False)
    )
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING and job.enqueued_at is None

    assert run_once(broker).relayed == [str(job.pk)]
    assert _queued(broker) == 1
    job.refresh_from_db()
    assert job.enqueued_at is not None
    assert run_once(broker).relayed == [], "sent once"


def test_a_retry_that_was_sent_is_left_to_its_message(fast: JobsRedisBroker) -> None:
    broker = fast
    job = _claimed(broker, "sent-retry")
    broker.client.delete(f"{broker.namespace}:default")
    sent_ms = int(time.time() * 1000)

    assert job_attempt_finish(job_id=str(job.pk), attempt=1, end=_retrying(sent_ms))
    job.refresh_from_db()
    assert job.enqueued_at is not None
    assert abs(job.enqueued_at.timestamp() * 1000 - sent_ms) < 1, "the send time is recorded"

    report = run_once(broker)
    assert report.relayed == [] and report.reconciled == []
    assert _queued(broker) == 0


def test_the_re_check_ends_after_the_longest_time_limit_even_if_an_attempt_stays_open(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = _claimed(broker, "stuck-attempt")
    # An attempt that opened a day ago and never closed (a thread stuck in C code); the
    # longest time limit of a registered job type is an hour.
    day_ago = timezone.now() - timedelta(days=1)
    JobAttempt.objects.filter(job=job).update(started_at=day_ago)
    state = f"{broker.namespace}:__recovery__"
    loss_ms = int((day_ago + timedelta(minutes=1)).timestamp() * 1000)
    broker.client.hset(state, mapping={"reconcile_before_ms": loss_ms, "reconcile_scanned": 1})

    run_once(broker)

    assert broker.client.hget(state, "reconcile_before_ms") is None, "the re-check ended"
    assert broker.client.hget(state, "reconcile_scanned") is None


def test_while_an_attempt_from_before_the_loss_runs_the_re_check_goes_on(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    _claimed(broker, "running-attempt")
    state = f"{broker.namespace}:__recovery__"
    loss_ms = int(time.time() * 1000) + 5  # the attempt started before the loss
    time.sleep(0.01)
    broker.client.hset(state, mapping={"reconcile_before_ms": loss_ms})

    run_once(broker)

    assert broker.client.hget(state, "reconcile_before_ms") == str(loss_ms).encode()
    assert broker.client.hget(state, "reconcile_scanned") == b"1", "every row was scanned once"
