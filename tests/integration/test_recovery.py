"""The recovery loop, the hardened consumer and the claim rules, with real Redis, Postgres and workers.

A "dead worker" here is a second JobsRedisBroker (its own broker id) that
really fetched messages into its acks sets and whose heartbeat is then made
old, exactly what a ``kill -9``'d process leaves behind.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.db import transaction
from django.test import override_settings

from jobs.errors import BrokerUnavailable
from jobs.models import AttemptOutcome, Job, JobAttempt, JobOutbox, JobStatus
from jobs.services import (
    JobRequest,
    job_message,
    job_retry,
    job_submit,
    job_submit_many,
    recovery,
)
from jobs.services.dispatch import jobs_send
from jobs.services.outbox import outbox_forget_flush
from jobs.services.recovery import RecoveryReport
from jobs.services.recovery_ledger import POISON, WORKER_LOST, job_attempts_mark_lost
from jobs.services.transitions import StartVerdict, job_attempt_start
from jobs.transport.broker import JobsRedisBroker, get_broker
from tests.actors import release, side_effects

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run_once(broker: JobsRedisBroker) -> RecoveryReport:
    """A recovery pass once this process's submissions are complete.

    With no grace (``FAST``), a pass would otherwise also relay a submission
    whose outbox row the background forgetter has not deleted yet.
    """
    outbox_forget_flush()
    return recovery.run_once(broker)


FAST = {
    "JOBS_HEARTBEAT_TIMEOUT_MS": 5_000,
    "JOBS_OUTBOX_GRACE_MS": 0,
    "JOBS_RECOVERY_INTERVAL_MS": 100,
}


@pytest.fixture
def fast(broker: JobsRedisBroker) -> Iterator[JobsRedisBroker]:
    """Short heartbeat timeout and no outbox grace; the recovery marker already in place."""
    with override_settings(**FAST):
        run_once(broker)  # first pass: writes the marker (nothing to reconcile yet)
        broker.client.hset(f"{broker.namespace}:__recovery__", "hold_until_ms", 0)
        yield broker


def _other_worker(broker: JobsRedisBroker) -> JobsRedisBroker:
    other = JobsRedisBroker(url=_url(broker), namespace=broker.namespace)
    for queue in broker.get_declared_queues():
        other.declare_queue(queue)
    other.actors = dict(broker.actors)  # the same job types, as in another worker process
    return other


def _url(broker: JobsRedisBroker) -> str:
    kwargs = broker.client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def _kill(dead: JobsRedisBroker, broker: JobsRedisBroker) -> None:
    """Make ``dead`` look like a process that stopped beating a minute ago."""
    old = int(time.time() * 1000) - 60_000
    broker.client.zadd(f"{broker.namespace}:__heartbeats__", {dead.broker_id: old})


def _reload(job: Job) -> Job:
    job.refresh_from_db()
    return job


def test_the_messages_of_a_dead_worker_go_back_to_every_band_and_delay_queue(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    jobs = [
        job_submit(job_type="tests.count", payload={"key": f"band-{p}"}, priority=p).job
        for p in (9, 5, 1)
    ]
    delayed = job_submit(
        job_type="tests.count", payload={"key": "later"}, delay=timedelta(hours=1)
    ).job
    dead = _other_worker(broker)
    for queue in ("default.urgent", "default", "default.bulk", "default.DQ"):
        assert len(dead.fetch_pairs(queue, 10)) == 1
    ns = broker.namespace
    assert broker.client.llen(f"{ns}:default") == 0
    _kill(dead, broker)

    report = run_once(broker)

    assert [w.broker_id for w in report.dead_workers] == [dead.broker_id]
    assert report.dead_workers[0].requeued == 4
    for queue in ("default.urgent", "default", "default.bulk", "default.DQ"):
        assert broker.client.llen(f"{ns}:{queue}") == 1, queue
        assert not broker.client.exists(f"{ns}:__acks__.{dead.broker_id}.{queue}")
    assert broker.client.zscore(f"{ns}:__heartbeats__", dead.broker_id) is None
    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in [*jobs, delayed]])} == {
        JobStatus.QUEUED
    }
    assert run_once(broker).dead_workers == [], "a second pass finds nothing left to do"


def test_a_live_worker_is_left_alone(fast: JobsRedisBroker) -> None:
    broker = fast
    job_submit(job_type="tests.count", payload={"key": "alive"})
    alive = _other_worker(broker)
    assert len(alive.fetch_pairs("default", 10)) == 1  # its heartbeat is fresh

    report = run_once(broker)

    assert report.dead_workers == []
    assert broker.client.scard(f"{broker.namespace}:__acks__.{alive.broker_id}.default") == 1


def test_a_running_job_of_a_dead_worker_is_marked_lost_and_runs_again_once(
    fast: JobsRedisBroker, wait_for: Any
) -> None:
    broker = fast
    job = job_submit(job_type="tests.count", payload={"key": "lost-run"}).job
    dead = _other_worker(broker)
    assert len(dead.fetch_pairs("default", 1)) == 1
    assert job_attempt_start(job_id=str(job.pk), worker_id=f"h:1:{dead.broker_id}").attempt == 1
    _kill(dead, broker)

    report = run_once(broker)

    assert report.dead_workers[0].lost == [str(job.pk)]
    assert report.dead_workers[0].resent == [], "its message was requeued, not re-sent"
    attempt = JobAttempt.objects.get(job=job, number=1)
    assert attempt.outcome == AttemptOutcome.LOST and attempt.error_type == WORKER_LOST
    assert _reload(job).status == JobStatus.RETRYING

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED)
    finally:
        worker.stop(timeout=10_000)
    assert job.attempts == 2
    assert side_effects().get("tests:runs:lost-run") == b"1"


def test_a_lost_job_whose_message_vanished_from_redis_is_resent_from_the_ledger(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = job_submit(job_type="tests.count", payload={"key": "vanished"}).job
    dead = _other_worker(broker)
    ((redis_id, _body),) = dead.fetch_pairs("default", 1)
    job_attempt_start(job_id=str(job.pk), worker_id=f"h:1:{dead.broker_id}")
    # Redis lost the worker's bookkeeping (a restart, a failover): only the ledger knows.
    broker.client.delete(f"{broker.namespace}:__acks__.{dead.broker_id}.default")
    broker.client.zrem(f"{broker.namespace}:__heartbeats__", dead.broker_id)
    broker.client.hdel(f"{broker.namespace}:default.msgs", redis_id)
    JobAttempt.objects.filter(job=job).update(started_at=job.created_at.replace(year=2000))

    report = run_once(broker)

    assert report.dead_workers[0].resent == [str(job.pk)]
    assert _reload(job).status == JobStatus.RETRYING
    body = broker.client.hget(
        f"{broker.namespace}:default.msgs", broker.client.lindex(f"{broker.namespace}:default", 0)
    )
    assert json.loads(body)["message_id"] == str(job.pk)


def test_the_outbox_relay_sends_a_committed_row_that_never_reached_redis(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = Job.objects.create(job_type="tests.count", queue="default", payload={"key": "outbox"})
    assert broker.client.llen(f"{broker.namespace}:default") == 0

    report = run_once(broker)

    assert report.relayed == [str(job.pk)]
    assert broker.client.llen(f"{broker.namespace}:default") == 1
    assert _reload(job).enqueued_at is not None
    assert run_once(broker).relayed == [], "a row that reached Redis is not sent twice"


def test_a_submission_deletes_its_outbox_row_once_redis_has_its_messages(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    single = job_submit(job_type="tests.count", payload={"key": "one"}).job
    batch = job_submit_many(
        requests=[JobRequest(job_type="tests.count", payload={"key": f"b{i}"}) for i in range(3)]
    )
    outbox_forget_flush()  # the rows are deleted by the process's background forgetter

    assert JobOutbox.objects.count() == 0
    assert broker.client.llen(f"{broker.namespace}:default") == 4
    for job in [single, *(s.job for s in batch)]:
        assert _reload(job).enqueued_at is not None
    assert run_once(broker).relayed == [], "nothing is sent twice"


def test_jobs_committed_while_redis_failed_are_sent_by_the_relay_from_their_outbox_row(
    fast: JobsRedisBroker, caplog: pytest.LogCaptureFixture
) -> None:
    from jobs.broker import setup

    broker = fast
    try:
        with caplog.at_level(logging.WARNING, logger="jobs.broker"), transaction.atomic():
            submissions = job_submit_many(
                requests=[
                    JobRequest(job_type="tests.count", payload={"key": f"lost{i}"})
                    for i in range(3)
                ]
            )
            # Redis goes away between the INSERT and the send after the commit.
            with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
                setup()
    finally:
        setup()
    assert any("Could not send 3 message(s)" in r.getMessage() for r in caplog.records)
    ids = sorted(str(s.job.pk) for s in submissions)
    assert broker.client.llen(f"{broker.namespace}:default") == 0
    assert JobOutbox.objects.get().job_ids == [str(s.job.pk) for s in submissions]

    report = run_once(broker)

    assert sorted(report.relayed) == ids
    assert broker.client.llen(f"{broker.namespace}:default") == 3
    assert JobOutbox.objects.count() == 0
    assert run_once(broker).relayed == [], "a relayed outbox is not sent twice"


def test_an_outbox_row_whose_jobs_have_moved_on_is_dropped_without_a_send(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = Job.objects.create(
        job_type="tests.count", queue="default", status=JobStatus.CANCELLED, enqueued_at=None
    )
    JobOutbox.objects.create(job_ids=[str(job.pk)])

    report = run_once(broker)

    assert report.relayed == []
    assert JobOutbox.objects.count() == 0
    assert broker.client.llen(f"{broker.namespace}:default") == 0


def test_the_relay_fails_a_row_whose_job_type_no_longer_exists(fast: JobsRedisBroker) -> None:
    job = Job.objects.create(job_type="tests.removed_long_ago", queue="default")

    report = run_once(fast)

    assert report.undeliverable == [str(job.pk)]
    assert _reload(job).status == JobStatus.FAILED
    assert job.error_type == "UnknownJobType"


def test_a_pass_is_skipped_while_another_process_holds_the_lock(fast: JobsRedisBroker) -> None:
    fast.client.set(f"{fast.namespace}:__recovery__.lock", "someone-else", px=5_000)

    assert run_once(fast).skipped


def test_after_redis_loses_its_data_waiting_jobs_are_sent_again(
    fast: JobsRedisBroker,
) -> None:
    broker = fast
    job = job_submit(job_type="tests.count", payload={"key": "flushed"}).job
    assert _reload(job).enqueued_at is not None
    broker.client.flushdb()  # what a restart without persistence leaves

    report = run_once(broker)

    assert report.redis_data_lost and not report.heartbeats_trusted
    assert report.reconciled == [str(job.pk)]
    assert broker.client.llen(f"{broker.namespace}:default") == 1
    assert run_once(broker).reconciled == []


def test_redis_down_at_submission_raises_broker_unavailable_and_writes_nothing(
    broker: JobsRedisBroker,
) -> None:
    from jobs.broker import setup

    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            setup()
            with pytest.raises(BrokerUnavailable, match="nothing was created"):
                job_submit(job_type="tests.count", payload={"key": "down"})
    finally:
        setup()
    assert Job.objects.count() == 0
    assert get_broker().client.ping()


def test_a_second_copy_of_a_running_job_is_acknowledged_without_running(
    broker: JobsRedisBroker, worker: Any, wait_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobs.middleware.ledger")
    job = job_submit(job_type="tests.hold", payload={"key": "dup-running"}).job
    try:
        wait_for(lambda: _reload(job).status == JobStatus.RUNNING)
        jobs_send([(job_message(job), None)])  # a duplicate delivery, while it runs
        acknowledged = f"Job {job.pk} is running; acknowledging without running."
        wait_for(lambda: any(r.getMessage() == acknowledged for r in caplog.records))
    finally:
        release("dup-running")

    wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED)
    broker.join("default", timeout=10_000)
    worker.join()

    assert side_effects().get("tests:runs:dup-running") == b"1"
    assert JobAttempt.objects.filter(job=job).count() == 1


def test_a_job_whose_worker_died_three_times_fails_as_poison_and_is_dead_lettered(
    broker: JobsRedisBroker, wait_for: Any
) -> None:
    job = job_submit(job_type="tests.count", payload={"key": "poison"}).job
    for n in range(3):
        assert job_attempt_start(job_id=str(job.pk), worker_id=f"h:{n}:dead{n}").attempt == n + 1
        job_attempts_mark_lost(
            worker_ids=[f"h:{n}:dead{n}"], error_type=WORKER_LOST, error_message=""
        )
    assert _reload(job).status == JobStatus.RETRYING

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: _reload(job).status == JobStatus.FAILED)
        broker.join("default", timeout=10_000)
    finally:
        worker.stop(timeout=10_000)

    assert job.error_type == POISON and "Poison message" in job.error_message
    assert side_effects().get("tests:runs:poison") is None, "never delivered again"
    assert broker.client.zcard(f"{broker.namespace}:default.XQ") == 1
    assert job_attempt_start(job_id=str(job.pk), worker_id="h:9:x").verdict is StartVerdict.FINISHED


def test_malformed_messages_are_dead_lettered_and_logged_once_while_neighbours_run(
    broker: JobsRedisBroker, wait_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ns = broker.namespace
    good = [job_submit(job_type="tests.count", payload={"key": f"n{i}"}).job for i in range(3)]
    unknown = job_submit(job_type="tests.count", payload={"key": "unknown"}).job
    bad_args = job_submit(job_type="tests.count", payload={"key": "bad-args"}).job
    # Rewrite two stored bodies and add one that is not JSON, between the good ones.
    ids = [i.decode() for i in broker.client.lrange(f"{ns}:default", 0, -1)]
    for redis_id in ids:
        body = json.loads(broker.client.hget(f"{ns}:default.msgs", redis_id))
        if body["message_id"] == str(unknown.pk):
            body["actor_name"] = "tests.no_such_actor"
        elif body["message_id"] == str(bad_args.pk):
            body["kwargs"] = {"key": "bad-args", "colour": "red"}
        else:
            continue
        broker.client.hset(f"{ns}:default.msgs", redis_id, json.dumps(body))
    garbage_id = str(uuid.uuid4())
    broker.client.hset(f"{ns}:default.msgs", garbage_id, b"\xff not json {")
    broker.client.linsert(f"{ns}:default", "AFTER", ids[0], garbage_id)

    caplog.set_level(logging.ERROR)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        wait_for(
            lambda: Job.objects.filter(pk__in=[j.pk for j in good], status="succeeded").count() == 3
        )
        wait_for(lambda: broker.client.zcard(f"{ns}:default.XQ") == 3)
        wait_for(lambda: _reload(bad_args).status == JobStatus.FAILED)
        wait_for(lambda: _reload(unknown).status == JobStatus.FAILED)
        wait_for(lambda: broker.client.keys(f"{ns}:__acks__.*") == [])
    finally:
        worker.stop(timeout=10_000)

    assert unknown.error_type == "UnknownJobType"
    assert bad_args.error_type == "InvalidArguments" and "colour" in bad_args.error_message
    assert side_effects().get("tests:runs:bad-args") is None
    dead_letter_logs = [r for r in caplog.records if "Dead-lettered message" in r.getMessage()]
    assert len(dead_letter_logs) == 3
    assert sum(garbage_id in r.getMessage() for r in dead_letter_logs) == 1


def test_a_restarted_delay_queue_consumer_takes_back_the_delayed_messages_it_held(
    broker: JobsRedisBroker,
) -> None:
    job = job_submit(job_type="tests.count", payload={"key": "held"}, delay=timedelta(hours=1)).job
    process = _other_worker(broker)
    # Its first consumer fetched the message, then lost its memory on a connection error.
    assert len(process.fetch_pairs("default.DQ", 10)) == 1
    assert broker.client.llen(f"{broker.namespace}:default.DQ") == 0

    consumer = process.consume("default.DQ", prefetch=10, timeout=10)
    message = next(consumer)

    assert message is not None and message.message_id == str(job.pk)
    assert message.options["eta"] > time.time() * 1000


def test_an_explicit_retry_gives_a_poison_job_a_fresh_budget_of_worker_deaths(
    broker: JobsRedisBroker,
) -> None:
    job = job_submit(job_type="tests.count", payload={"key": "poison-retried"}).job
    for n in range(3):
        job_attempt_start(job_id=str(job.pk), worker_id=f"h:{n}:dead{n}")
        job_attempts_mark_lost(
            worker_ids=[f"h:{n}:dead{n}"], error_type=WORKER_LOST, error_message=""
        )
    assert job_attempt_start(job_id=str(job.pk), worker_id="h:8:x").verdict is StartVerdict.POISON

    job_retry(job=_reload(job), enforce_limits=False)

    decision = job_attempt_start(job_id=str(job.pk), worker_id="h:9:y")
    assert decision.verdict is StartVerdict.RUN and decision.attempt == 4
