"""The job ledger with a real worker, real Redis and real Postgres."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs.errors import InvalidTransition
from jobs.models import AttemptOutcome, Job, JobStatus
from jobs.queues import redis_queue_name
from jobs.services import (
    JobRequest,
    job_cancel,
    job_message,
    job_retry,
    job_submit,
    job_submit_many,
)
from jobs.services.dispatch import jobs_send
from jobs.services.transitions import (
    AttemptEnd,
    StartVerdict,
    job_attempt_finish,
    job_attempt_start,
)
from tests.actors import release, side_effects
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _reload(job: Job) -> Job:
    job.refresh_from_db()
    return job


def _finished(job: Job) -> bool:
    return _reload(job).status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _queue_size(broker: Any, queue: str) -> int:
    return int(broker.client.llen(f"{broker.namespace}:{queue}"))


def test_a_submitted_job_runs_and_stores_its_result(worker: Any, wait_for: Any) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "hello"}).job

    wait_for(lambda: _finished(job))

    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"message": "hello"}
    assert job.attempts == 1
    assert job.progress == 100
    assert job.started_at is not None and job.finished_at is not None
    attempt = job.attempt_set.get()
    assert attempt.outcome == AttemptOutcome.SUCCEEDED
    assert attempt.worker_id.count(":") == 2


def test_a_job_that_fails_once_succeeds_on_retry_with_two_attempts(
    worker: Any, wait_for: Any
) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "again", "fail_times": 1}).job

    wait_for(lambda: _finished(job), timeout=20)

    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert job.result == {"message": "again"}
    outcomes = list(
        job.attempt_set.order_by("number").values_list("number", "outcome", "error_type")
    )
    assert outcomes == [(1, "failed", "EchoFailure"), (2, "succeeded", "")]


def test_a_job_whose_retries_run_out_is_failed_and_dead_lettered(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "doomed", "fail_times": 10}, max_retries=1
    ).job

    wait_for(lambda: _finished(job), timeout=20)

    assert job.status == JobStatus.FAILED
    assert job.attempts == 2
    assert job.error_type == "EchoFailure"
    assert "retries exhausted" in job.error_message
    assert "Traceback" in job.error_traceback
    assert job.dead_lettered_at is not None
    # The worker dead-letters the message right after the ledger records the failure.
    dead_key = f"{broker.namespace}:default.XQ.msgs"
    wait_for(
        lambda: any(str(job.id) in m.decode() for m in broker.client.hvals(dead_key)),
        timeout=10,
    )


def test_the_soft_time_limit_raises_inside_the_job_so_it_can_clean_up(
    worker: Any, wait_for: Any
) -> None:
    cleaned = job_submit(job_type="tests.sleepy_cleanup", payload={"catch": True}).job
    timed_out = job_submit(job_type="tests.sleepy_cleanup", payload={"catch": False}).job

    wait_for(lambda: _finished(cleaned) and _finished(timed_out), timeout=10)

    assert cleaned.status == JobStatus.SUCCEEDED
    assert cleaned.result == {"cleaned_up": True}
    assert timed_out.status == JobStatus.FAILED
    assert timed_out.error_type == "SoftTimeLimitExceeded"
    assert timed_out.attempt_set.get().outcome == AttemptOutcome.TIMED_OUT


def test_a_rolled_back_transaction_sends_nothing(broker: Any) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        job_submit(job_type="diagnostics.echo", payload={"message": "never"})
        raise Boom

    assert Job.objects.count() == 0
    assert _queue_size(broker, "default") == 0


def test_a_committed_transaction_sends_exactly_once_after_commit(broker: Any) -> None:
    with transaction.atomic():
        job = job_submit(job_type="diagnostics.echo", payload={"message": "once"}).job
        assert _queue_size(broker, "default") == 0, "nothing is sent before the commit"

    assert _queue_size(broker, "default") == 1
    message_id = broker.client.lindex(f"{broker.namespace}:default", 0)
    body = broker.client.hget(f"{broker.namespace}:default.msgs", message_id).decode()
    assert str(job.id) in body


def test_the_same_idempotency_key_returns_the_existing_job_and_sends_nothing(
    broker: Any,
) -> None:
    org = OrganizationFactory.create()
    other = OrganizationFactory.create()
    first = job_submit(
        job_type="diagnostics.echo",
        payload={"message": "a"},
        organization=org,
        idempotency_key="k1",
    )
    second = job_submit(
        job_type="diagnostics.echo",
        payload={"message": "b"},
        organization=org,
        idempotency_key="k1",
    )
    elsewhere = job_submit(
        job_type="diagnostics.echo",
        payload={"message": "c"},
        organization=other,
        idempotency_key="k1",
    )

    assert first.created and not second.created and elsewhere.created
    assert second.job.pk == first.job.pk
    assert second.job.payload == {"message": "a", "sleep_seconds": 0.0, "fail_times": 0}
    assert elsewhere.job.pk != first.job.pk, "keys are unique per organization"
    assert _queue_size(broker, "default") == 2


def test_concurrent_submissions_with_one_key_create_one_job(broker: Any) -> None:
    org = OrganizationFactory.create()
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        barrier.wait()
        results.append(
            job_submit(
                job_type="diagnostics.echo",
                payload={"message": "x"},
                organization=org,
                idempotency_key="race",
            )
        )
        connection.close()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert Job.objects.filter(organization=org).count() == 1
    assert sum(r.created for r in results) == 1
    assert len({r.job.pk for r in results}) == 1
    assert _queue_size(broker, "default") == 1


def test_a_duplicate_delivery_of_a_succeeded_job_does_not_run_it_again(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    job = job_submit(job_type="tests.count", payload={"key": "dup"}).job
    wait_for(lambda: _finished(job))
    assert side_effects().get("tests:runs:dup") == b"1"

    jobs_send([(job_message(job), None)])
    broker.join("default", timeout=10_000)
    worker.join()

    assert side_effects().get("tests:runs:dup") == b"1"
    assert _reload(job).attempts == 1
    assert job.status == JobStatus.SUCCEEDED


def test_bulk_submission_uses_one_insert_and_one_pipeline(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": str(i)}) for i in range(300)
    ]

    with CaptureQueriesContext(connection) as queries:
        submissions = job_submit_many(requests=requests)

    # One statement writes every row and the batch's outbox row (WITH ... INSERT ... INSERT).
    inserts = [q for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(inserts) == 1
    assert 'INSERT INTO "jobs_job"' in inserts[0]["sql"]
    assert 'INSERT INTO "jobs_joboutbox"' in inserts[0]["sql"]
    assert len(submissions) == 300 and all(s.created for s in submissions)
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 300, timeout=30)
    assert Job.objects.get(pk=submissions[7].job.pk).result == {"message": "7"}


def test_a_queued_job_cancelled_before_it_runs_never_runs(broker: Any, wait_for: Any) -> None:
    job = job_submit(job_type="tests.count", payload={"key": "cancelled"}).job
    job_cancel(job=job)
    assert job.status == JobStatus.CANCELLED

    import dramatiq

    w = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    w.start()
    try:
        broker.join("default", timeout=10_000)
        w.join()
    finally:
        w.stop()

    assert side_effects().get("tests:runs:cancelled") is None
    assert _reload(job).status == JobStatus.CANCELLED
    assert job.attempts == 0


def test_a_running_job_stops_at_its_next_progress_report_when_cancelled(
    worker: Any, wait_for: Any
) -> None:
    # Held after its first step until the cancel is requested, however slow the machine.
    job = job_submit(
        job_type="tests.progress", payload={"steps": 100, "step_seconds": 0, "hold_key": "cancel"}
    ).job
    wait_for(lambda: _reload(job).progress >= 1)

    job_cancel(job=job)
    release("cancel")

    wait_for(lambda: _finished(job))
    assert job.status == JobStatus.CANCELLED
    assert job.progress < 100
    assert job.attempt_set.get().outcome == AttemptOutcome.CANCELLED


def test_a_failed_job_retried_explicitly_runs_again_with_a_fresh_budget(
    worker: Any, wait_for: Any
) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "m", "fail_times": 1}, max_retries=0
    ).job
    wait_for(lambda: _finished(job))
    assert job.status == JobStatus.FAILED

    job_retry(job=job, enforce_limits=False)
    assert job.status == JobStatus.QUEUED

    wait_for(lambda: _finished(job))
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert job.error_message == ""


def test_a_result_over_the_cap_is_a_recorded_error_not_a_truncation(
    worker: Any, wait_for: Any, settings: Any
) -> None:
    settings.JOBS_MAX_RESULT_BYTES = 1_000
    job = job_submit(job_type="tests.big_result", payload={"size": 5_000}).job

    wait_for(lambda: _finished(job))

    assert job.status == JobStatus.FAILED
    assert job.error_type == "ResultTooLarge"
    assert "JOBS_MAX_RESULT_BYTES=1000" in job.error_message
    assert job.result is None
    assert job.attempts == 1, "a result that is too large is not retried"


def test_the_worker_sets_the_tenant_context_and_clears_it_afterwards(
    worker: Any, wait_for: Any
) -> None:
    org = OrganizationFactory.create()
    tenant_job = job_submit(job_type="tests.whoami", organization=org).job
    wait_for(lambda: _finished(tenant_job))
    system_job = job_submit(job_type="tests.whoami").job
    wait_for(lambda: _finished(system_job))

    assert tenant_job.result == {
        "organization_id": org.pk,
        "job_id": str(tenant_job.pk),
        "attempt": 1,
    }
    assert system_job.result == {
        "organization_id": None,
        "job_id": str(system_job.pk),
        "attempt": 1,
    }


def test_a_delayed_job_waits_for_its_delay(worker: Any, wait_for: Any) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "later"}, delay=timedelta(seconds=1)
    ).job
    assert job.scheduled_for is not None

    wait_for(lambda: _finished(job))

    assert job.status == JobStatus.SUCCEEDED
    assert job.started_at is not None and job.started_at >= job.scheduled_for


def test_a_message_sent_without_a_ledger_row_is_adopted(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    message = broker.get_actor("diagnostics.echo").send(message="raw")

    job = wait_for(
        lambda: Job.objects.filter(pk=message.message_id, status=JobStatus.SUCCEEDED).first()
    )

    assert job.result == {"message": "raw"}
    assert job.organization_id is None


def test_priority_bands_route_urgent_jobs_to_their_own_list(broker: Any) -> None:
    job_submit(job_type="diagnostics.echo", payload={"message": "n"}, priority=5)
    job_submit(job_type="diagnostics.echo", payload={"message": "u"}, priority=9)
    job_submit(job_type="diagnostics.echo", payload={"message": "b"}, priority=1)

    assert redis_queue_name("default", 9) == "default.urgent"
    assert _queue_size(broker, "default") == 1
    assert _queue_size(broker, "default.urgent") == 1
    assert _queue_size(broker, "default.bulk") == 1


def test_status_never_moves_backwards_under_concurrent_updates(broker: Any) -> None:
    rank: dict[str, int] = {
        JobStatus.QUEUED: 0,
        JobStatus.RUNNING: 1,
        JobStatus.RETRYING: 1,
        JobStatus.SUCCEEDED: 2,
        JobStatus.FAILED: 2,
        JobStatus.CANCELLED: 2,
    }
    jobs = [
        job_submit(job_type="diagnostics.echo", payload={"message": str(i)}).job for i in range(20)
    ]
    for job in jobs:
        assert job_attempt_start(job_id=str(job.pk), worker_id="w:1:a").verdict is StartVerdict.RUN

    observed: dict[str, list[str]] = {str(j.pk): [] for j in jobs}
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            for pk, status in Job.objects.values_list("pk", "status"):
                observed[str(pk)].append(status)
        connection.close()

    def finish(job: Job, status: JobStatus, outcome: AttemptOutcome) -> None:
        job_attempt_finish(
            job_id=str(job.pk), attempt=1, end=AttemptEnd(status=status, outcome=outcome)
        )
        connection.close()

    def restart(job: Job) -> None:
        job_attempt_start(job_id=str(job.pk), worker_id="w:2:b")
        connection.close()

    def cancel(job: Job) -> None:
        with contextlib.suppress(InvalidTransition):
            job_cancel(job=Job.objects.get(pk=job.pk))
        connection.close()

    watcher = threading.Thread(target=observe)
    watcher.start()
    threads = []
    for job in jobs:
        threads += [
            threading.Thread(
                target=finish, args=(job, JobStatus.SUCCEEDED, AttemptOutcome.SUCCEEDED)
            ),
            threading.Thread(target=finish, args=(job, JobStatus.RETRYING, AttemptOutcome.FAILED)),
            threading.Thread(target=restart, args=(job,)),
            threading.Thread(target=cancel, args=(job,)),
        ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()

    for job in jobs:
        job.refresh_from_db()
        history = [rank[JobStatus(s)] for s in observed[str(job.pk)]] + [rank[job.status]]
        assert history == sorted(history), f"{job.pk} moved backwards: {observed[str(job.pk)]}"
        # A finished job is never claimed again.
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            verdict = job_attempt_start(job_id=str(job.pk), worker_id="w:3:c").verdict
            assert verdict is StartVerdict.FINISHED


def test_cancels_and_retries_leave_an_audit_trail(broker: Any) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "audit"}).job

    job_cancel(job=job, via="cli")
    job_retry(job=job, enforce_limits=False, via="admin")

    kinds = list(job.events.order_by("created_at").values_list("kind", "via"))
    assert kinds == [("cancelled", "cli"), ("retried", "admin")]


def test_the_end_of_an_attempt_is_recorded_after_the_database_connection_drops(
    worker: Any, wait_for: Any
) -> None:
    job = job_submit(job_type="tests.drop_connection").job

    wait_for(lambda: _finished(job), timeout=20)

    assert job.status == JobStatus.SUCCEEDED
    assert job.result is not None and "terminated" in job.result


def test_a_retry_that_arrives_before_its_failed_attempt_is_recorded_waits_for_it(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    from jobs.selectors.queues import queue_stats

    job = job_submit(job_type="tests.count", payload={"key": "early-retry"}).job
    # Take the first message out of play and claim attempt 1 by hand, as a worker would.
    broker.client.delete(f"{broker.namespace}:default", f"{broker.namespace}:default.msgs")
    assert job_attempt_start(job_id=str(job.pk), worker_id="h:1:a").attempt == 1
    retry = job_message(job).copy(options={"retries": 1})
    jobs_send([(retry, None)])

    # The worker sees the row still `running` and puts the retry back with a delay.
    wait_for(lambda: {s.queue: s for s in queue_stats(broker)}["default"].delayed == 1)
    assert side_effects().get("tests:runs:early-retry") is None
    # The slow write of attempt 1 lands.
    job_attempt_finish(
        job_id=str(job.pk),
        attempt=1,
        end=AttemptEnd(status=JobStatus.RETRYING, outcome=AttemptOutcome.FAILED),
    )

    wait_for(lambda: _finished(job), timeout=20)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert side_effects().get("tests:runs:early-retry") == b"1"
