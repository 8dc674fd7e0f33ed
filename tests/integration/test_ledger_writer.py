"""The worker's ledger writer and fairness slot releaser, against real Postgres and Redis.

Batches are built deterministically: transitions are queued before the
writer thread exists, then the first public call starts it and it writes
them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection

from jobs.middleware.fairness import SlotReleaser
from jobs.models import AttemptOutcome, Job, JobStatus
from jobs.services import job_submit, ledger_writer
from jobs.services.ledger_writer import LedgerWriter, _Pending
from jobs.services.transitions import AttemptEnd, job_transitions_write
from jobs.transport.acks import Acker, AckGate
from jobs.transport.limits import concurrency_acquire, concurrency_running
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DONE = AttemptEnd(status=JobStatus.SUCCEEDED, outcome=AttemptOutcome.SUCCEEDED, result_json="1")
FAILED_ONCE = AttemptEnd(
    status=JobStatus.RETRYING, outcome=AttemptOutcome.FAILED, error_type="Boom", error_message="b"
)


@pytest.fixture
def writer() -> Iterator[LedgerWriter]:
    w = LedgerWriter()
    yield w
    w.close()


def _job() -> str:
    return str(job_submit(job_type="diagnostics.echo", payload={"message": "m"}).job.pk)


def _queue(bucket: list[_Pending], job_id: str, data: Any) -> _Pending:
    pending = _Pending(job_id, data)
    bucket.append(pending)
    return pending


def test_concurrent_transitions_are_written_together(broker: Any, writer: LedgerWriter) -> None:
    ids = [_job() for _ in range(12)]
    queued = [_queue(writer._starts, job_id, "h:1:a") for job_id in ids[1:]]

    assert writer.start(job_id=ids[0], worker_id="h:1:a") == 1
    assert [p.wait() for p in queued] == [1] * 11
    assert (writer.batches, writer.transitions) == (1, 12), "one statement for all twelve"
    assert Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING, attempts=1).count() == 12

    # Finishes of these jobs and starts of new ones share one statement too.
    fresh = [_job() for _ in range(3)]
    finishes = [_queue(writer._finishes, job_id, (1, DONE)) for job_id in ids[1:]]
    starts = [_queue(writer._starts, job_id, "h:1:a") for job_id in fresh]
    assert writer.finish(job_id=ids[0], attempt=1, end=DONE) is True
    assert all(p.wait() for p in finishes)
    assert [p.wait() for p in starts] == [1, 1, 1]
    assert (writer.batches, writer.transitions) == (2, 27)
    assert Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED, result=1).count() == 12
    assert Job.objects.filter(pk__in=fresh, status=JobStatus.RUNNING).count() == 3


def test_a_statement_refuses_a_job_twice(broker: Any) -> None:
    job_id = _job()
    with pytest.raises(ValueError, match="only once"):
        job_transitions_write(finishes=[(job_id, 1, DONE)], starts=[(job_id, "h:1:a")])


def test_an_attempt_ends_before_its_retry_claims_the_job_in_the_same_batch(
    broker: Any, writer: LedgerWriter
) -> None:
    job_id = _job()
    assert writer.start(job_id=job_id, worker_id="h:1:a") == 1

    # The retry's claim is queued first; the writer still closes attempt 1 before it.
    retry = _queue(writer._starts, job_id, "h:2:b")
    assert writer.finish(job_id=job_id, attempt=1, end=FAILED_ONCE) is True
    assert retry.wait() == 2

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 2)
    assert list(job.attempt_set.values_list("number", "outcome", "worker_id")) == [
        (1, "failed", "h:1:a"),
        (2, "", "h:2:b"),
    ]


def test_two_deliveries_of_one_job_in_a_batch_claim_it_once(
    broker: Any, writer: LedgerWriter
) -> None:
    job_id = _job()
    duplicate = _queue(writer._starts, job_id, "h:2:b")

    assert writer.start(job_id=job_id, worker_id="h:1:a") is None, "the queued one won"
    assert duplicate.wait() == 1
    assert Job.objects.get(pk=job_id).attempt_set.get().worker_id == "h:2:b"


def test_a_database_error_reaches_every_waiter_and_the_writer_reconnects(
    broker: Any, writer: LedgerWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = _job(), _job(), _job()
    assert writer.start(job_id=first, worker_id="h:1:a") == 1
    # Trust the connection (no health probe), then kill it under the writer.
    monkeypatch.setattr(ledger_writer, "RECENT_USE_SECONDS", 3600.0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    queued = _queue(writer._starts, second, "h:1:a")
    with pytest.raises(DatabaseError):
        writer.start(job_id=third, worker_id="h:1:a")
    with pytest.raises(DatabaseError):
        queued.wait()

    assert writer.start(job_id=third, worker_id="h:1:a") == 1, "the next batch reconnects"
    assert Job.objects.get(pk=second).status == JobStatus.QUEUED, "nothing half-written"


def test_close_writes_what_is_pending_and_the_writer_starts_again_when_used(
    broker: Any, writer: LedgerWriter
) -> None:
    first, second = _job(), _job()
    assert writer.start(job_id=first, worker_id="h:1:a") == 1
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(writer.finish(job_id=first, attempt=1, end=DONE))
    )
    waiter.start()
    writer.close()
    waiter.join(10)
    assert results == [True]
    assert writer.start(job_id=second, worker_id="h:1:a") == 1


def test_the_slot_releaser_frees_slots_without_the_job_thread_waiting(broker: Any) -> None:
    org = OrganizationFactory.create()
    releaser = SlotReleaser()
    try:
        for n in range(5):
            assert concurrency_acquire(
                organization_id=org.pk, job_id=f"job-{n}", limit=5, lease_ms=60_000
            )
        assert concurrency_running(organization_id=org.pk) == 5
        for n in range(5):
            releaser.release((org.pk, f"job-{n}"))
        deadline = time.monotonic() + 5
        while concurrency_running(organization_id=org.pk) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert concurrency_running(organization_id=org.pk) == 0
    finally:
        releaser.close()


def test_the_acker_sends_many_acks_in_one_call_and_keeps_dramatiqs_rule(broker: Any) -> None:
    for n in range(6):
        job_submit(job_type="diagnostics.echo", payload={"message": str(n)})
    fetched = broker.fetch_pairs("default", 6)
    assert len(fetched) == 6
    acks_key = f"{broker.namespace}:__acks__.{broker.broker_id}.default"
    bodies_key = f"{broker.namespace}:default.msgs"
    assert broker.client.scard(acks_key) == 6

    # The last one was taken back by recovery meanwhile: its ack must not delete its body.
    requeued_id = fetched[-1][0]
    broker.client.srem(acks_key, requeued_id)
    broker.client.rpush(f"{broker.namespace}:default", requeued_id)

    acker = Acker(broker)
    try:
        for redis_id, _ in fetched[1:]:
            acker._pending.append(("default", redis_id))
        acker.ack("default", fetched[0][0])
        assert acker.flush(timeout=5)
        assert (acker.calls, acker.acked) == (1, 6), "one script call for all six"
    finally:
        acker.close()
    assert broker.client.scard(acks_key) == 0
    assert broker.client.hkeys(bodies_key) == [requeued_id.encode()], "still deliverable"


def test_a_deferred_finish_survives_a_database_error_and_reports_once_committed(
    broker: Any, writer: LedgerWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _job()
    assert writer.start(job_id=job_id, worker_id="h:1:a") == 1
    monkeypatch.setattr(ledger_writer, "RECENT_USE_SECONDS", 3600.0)
    monkeypatch.setattr(ledger_writer, "RETRY_DELAYS", (0.2,))
    with connection.cursor() as cursor:  # the writer's connection dies under it
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    reported: list[tuple[bool, str]] = []
    done = threading.Event()

    def committed(pending: Any) -> None:
        reported.append((pending.result, Job.objects.get(pk=job_id).status))
        done.set()

    writer.finish_later(job_id=job_id, attempt=1, end=DONE, callback=committed)
    assert done.wait(10), "written again after the error"
    assert reported == [(True, JobStatus.SUCCEEDED)], "reported once, after the commit"


def test_an_ack_gate_holds_the_ack_until_it_opens() -> None:
    sent: list[str] = []
    gate = AckGate()
    gate.then(lambda: sent.append("ack"))
    assert sent == []
    gate.open()
    assert sent == ["ack"]
    opened = AckGate()
    opened.open()
    opened.then(lambda: sent.append("at once"))
    assert sent == ["ack", "at once"]
