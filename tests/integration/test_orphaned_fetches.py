"""Messages in a live worker's acks set that the worker never received go back to their queue.

A fetch moves ids into the worker's acks set in Redis and returns their
bodies; when the reply is lost (the link breaks after Redis ran the script),
the worker never sees them, and without a reclaim they wait for the worker to
die. Here the fetch script runs against real Redis exactly as the consumer's
would, and its reply is dropped: the state a lost reply leaves behind.
Real Redis, Postgres and Dramatiq workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq import Message

from jobs.models import Job, JobStatus
from jobs.services import job_submit
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.held import HeldMessages
from tests.actors import release, side_effects

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _fetch_with_reply_lost(broker: JobsRedisBroker, queue: str, count: int) -> list[str]:
    """Run the consumer's fetch script for ``broker``'s worker, drop the reply; the Redis ids."""
    raw = broker.scripts["jobs_fetch"](
        keys=[broker.namespace], args=[queue, broker.broker_id, int(time.time() * 1000), count]
    )
    return [raw[i].decode() for i in range(0, len(raw), 3)]


def _acks(broker: JobsRedisBroker, queue: str) -> set[str]:
    key = f"{broker.namespace}:__acks__.{broker.broker_id}.{queue}"
    return {m.decode() for m in broker.client.smembers(key)}


def _waiting(broker: JobsRedisBroker, queue: str) -> list[str]:
    return [m.decode() for m in broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)]


def _status(job: Job) -> str:
    return str(Job.objects.values_list("status", flat=True).get(pk=job.pk))


@pytest.fixture
def one_thread_worker(broker: JobsRedisBroker) -> Iterator[dramatiq.Worker]:
    """A real worker of one thread (prefetch 2) that looks for orphans every 0.2 s."""
    saved = broker.reclaim_interval_seconds
    broker.reclaim_interval_seconds = 0.2
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)
        broker.reclaim_interval_seconds = saved


def test_a_starting_consumer_takes_back_a_fetch_whose_reply_was_lost(
    broker: JobsRedisBroker,
) -> None:
    jobs = [job_submit(job_type="tests.count", payload={"key": f"lost-{i}"}).job for i in range(2)]
    lost = _fetch_with_reply_lost(broker, "default", 2)
    assert len(lost) == 2 and _waiting(broker, "default") == []

    consumer = broker.consume("default", prefetch=10, timeout=50)
    received = [m for m in (next(consumer), next(consumer)) if m is not None]

    assert sorted(m.message_id for m in received) == sorted(str(j.pk) for j in jobs)
    assert sorted(m.options["redis_message_id"] for m in received) == sorted(lost)
    assert _acks(broker, "default") == set(lost), "fetched again, now by the consumer"
    for message in received:
        consumer.ack(message)
    assert broker.acker.flush(timeout=10)
    assert _acks(broker, "default") == set()


def test_a_running_worker_puts_back_what_it_never_received_and_keeps_what_it_holds(
    broker: JobsRedisBroker, one_thread_worker: dramatiq.Worker, wait_for: Callable[..., Any]
) -> None:
    holding = [
        job_submit(job_type="tests.hold", payload={"key": f"orphan-holder-{i}"}).job
        for i in range(2)
    ]
    # One runs, one waits in the worker: its prefetch of 2 is full, so it fetches nothing more.
    wait_for(lambda: len(_acks(broker, "default")) == 2)
    wait_for(lambda: JobStatus.RUNNING in {_status(j) for j in holding})
    held = _acks(broker, "default")
    orphan = job_submit(job_type="tests.count", payload={"key": "orphan"}).job
    waiting = _waiting(broker, "default")
    assert len(waiting) == 1

    # (Not checked that the list is empty now: the worker may already have put it back.)
    assert _fetch_with_reply_lost(broker, "default", 1) == waiting

    # Put back within the reclaim interval; the messages the worker holds stay with it.
    wait_for(lambda: _waiting(broker, "default") == waiting)
    assert _acks(broker, "default") == held
    assert _status(orphan) == JobStatus.QUEUED

    for i in range(2):
        release(f"orphan-holder-{i}")
    wait_for(lambda: _status(orphan) == JobStatus.SUCCEEDED)
    wait_for(lambda: all(_status(j) == JobStatus.SUCCEEDED for j in holding))
    assert int(side_effects().get("tests:runs:orphan") or 0) == 1
    wait_for(lambda: _acks(broker, "default") == set())


def test_a_batch_whose_accepting_failed_part_way_is_fetched_again_by_the_next_consumer(
    broker: JobsRedisBroker,
) -> None:
    # A message for a job type this worker lacks is dead-lettered as it is accepted, and
    # the ledger is told; that report fails here, after the rest of the batch was fetched.
    unknown: Message[Any] = Message(
        queue_name="default", actor_name="no.such.type", args=(), kwargs={}, options={}
    )
    broker.client.hset(f"{broker.namespace}:default.msgs", unknown.message_id, unknown.encode())
    broker.client.rpush(f"{broker.namespace}:default", unknown.message_id)
    job = job_submit(job_type="tests.count", payload={"key": "after-unknown"}).job

    def report_fails(job_id: str, error_type: str, reason: str) -> None:
        raise RuntimeError("the ledger could not be told")

    saved, broker.on_dead_letter = broker.on_dead_letter, report_fails
    try:
        with pytest.raises(RuntimeError):
            next(broker.consume("default", prefetch=10, timeout=50))
    finally:
        broker.on_dead_letter = saved

    # The worker restarts the consumer; the new one gets the job fetched with it.
    message = next(broker.consume("default", prefetch=10, timeout=50))
    assert message is not None and message.message_id == str(job.pk)


def test_a_restarted_delay_queue_consumer_keeps_the_messages_whose_ack_is_on_its_way(
    broker: JobsRedisBroker,
) -> None:
    ns, queue = broker.namespace, "default.DQ"
    held = HeldMessages(broker.client)
    for redis_id in ("moved", "dropped"):
        broker.client.hset(f"{ns}:{queue}.msgs", redis_id, b"{}")
        broker.client.sadd(f"{ns}:__acks__.{broker.broker_id}.{queue}", redis_id)
    held.add(queue, ["moved", "dropped"])
    # "moved" was due: its copy is on its queue and its ack waits in the acker. Then the
    # consumer failed, and Dramatiq dropped the delayed messages its thread held.
    held.acking(queue, "moved")
    held.forget_queue(queue)

    assert held.reclaim(ns, broker.broker_id, queue) == ["dropped"]
    assert _waiting(broker, queue) == ["dropped"]
    assert _acks(broker, queue) == {"moved"}
