"""Queue wake-ups: idle consumers wait for a notification instead of polling.

Real Redis, Postgres and an in-process Dramatiq worker. The wake-up poll is
set to a minute, far beyond every deadline here, so a job that starts in time
was fetched because a notification woke its consumer, not by a poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest

from jobs.models import Job, JobStatus
from jobs.services import job_message, job_submit
from jobs.services.dispatch import jobs_send
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.consumer import JobsRedisConsumer
from jobs.transport.wakeups import QueueWakeups, wakeup_channel
from tests.actors import side_effects

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: Longer than any deadline in these tests: only a notification can wake a consumer in time.
NEVER_MS = 60_000


@pytest.fixture
def wakeups(broker: JobsRedisBroker) -> Iterator[QueueWakeups]:
    """The broker's wake-ups with a one-minute safety poll; restored afterwards."""
    saved = (
        broker.wakeups.poll_ms,
        broker.publishes_wakeups,
        broker.heartbeat_timeout,
        broker.reclaim_interval_seconds,
    )
    broker.wakeups.poll_ms = NEVER_MS
    # Consumers also poll within a quarter of the heartbeat timeout, to keep beating,
    # and when they are due to take back orphaned messages.
    broker.heartbeat_timeout = 4 * NEVER_MS
    broker.reclaim_interval_seconds = NEVER_MS / 1000
    yield broker.wakeups
    (
        broker.wakeups.poll_ms,
        broker.publishes_wakeups,
        broker.heartbeat_timeout,
        broker.reclaim_interval_seconds,
    ) = saved


@pytest.fixture
def idle_worker(
    wakeups: QueueWakeups, worker: dramatiq.Worker, wait_for: Callable[..., Any]
) -> dramatiq.Worker:
    """The in-process worker once its listener is subscribed and its consumers wait for wake-ups."""
    assert wakeups.wait_until_listening(15), "the wake-up listener never subscribed"
    wait_for(lambda: _all_waiting(worker))
    return worker


_QUEUES = ("default", "default.DQ", "default.urgent")


def _waiting(worker: dramatiq.Worker, queue: str) -> bool:
    consumer = worker.consumers[queue].consumer  # None until its thread has started
    return isinstance(consumer, JobsRedisConsumer) and consumer.waiting_for_wakeup


def _all_waiting(worker: dramatiq.Worker) -> bool:
    return all(_waiting(worker, queue) for queue in _QUEUES)


def _status(job: Job) -> str:
    return str(Job.objects.values_list("status", flat=True).get(pk=job.pk))


def _runs(key: str) -> int:
    return int(side_effects().get(f"tests:runs:{key}") or 0)


def test_an_enqueue_wakes_the_idle_consumer_of_its_queue(
    idle_worker: dramatiq.Worker, wakeups: QueueWakeups, wait_for: Callable[..., Any]
) -> None:
    before = wakeups.notifications

    job = job_submit(job_type="tests.count", payload={"key": "woken"}).job

    wait_for(lambda: _runs("woken") == 1)
    assert wakeups.notifications > before
    # The outcome is committed by the ledger writer after the job's side effect.
    wait_for(lambda: _status(job) == JobStatus.SUCCEEDED)


def test_a_bulk_enqueue_wakes_every_band_it_filled(
    idle_worker: dramatiq.Worker, wait_for: Callable[..., Any]
) -> None:
    jobs = [
        job_submit(job_type="tests.count", payload={"key": f"bulk-{p}"}, priority=p).job
        for p in (9, 5)
    ]
    # Re-send both rows together: the pipelined path, one round trip for both bands.
    jobs_send([(job_message(job), None) for job in jobs])

    wait_for(lambda: _runs("bulk-9") >= 1 and _runs("bulk-5") >= 1)


def test_a_delayed_job_runs_when_due_without_waiting_for_a_poll(
    idle_worker: dramatiq.Worker, wait_for: Callable[..., Any]
) -> None:
    job = job_submit(
        job_type="tests.count", payload={"key": "delayed"}, delay=timedelta(milliseconds=300)
    ).job

    # The delay-queue consumer is woken to fetch it, returns to its thread when
    # the eta passes, and the move to the queue wakes the queue's consumer.
    wait_for(lambda: _runs("delayed") == 1)
    # The outcome is committed by the ledger writer after the job's side effect.
    wait_for(lambda: _status(job) == JobStatus.SUCCEEDED)


def test_the_listener_resubscribes_after_its_connection_is_killed_and_wake_ups_resume(
    idle_worker: dramatiq.Worker,
    broker: JobsRedisBroker,
    wakeups: QueueWakeups,
    wait_for: Callable[..., Any],
) -> None:
    subscriptions = wakeups.subscriptions
    pubsub = wakeups._pubsub
    assert pubsub is not None and pubsub.connection is not None
    host, port = pubsub.connection._sock.getsockname()[:2]

    assert broker.client.client_kill_filter(_type="pubsub", addr=f"{host}:{port}") == 1

    wait_for(lambda: wakeups.subscriptions > subscriptions and wakeups.listening)
    wait_for(lambda: _all_waiting(idle_worker))
    before = wakeups.notifications
    job_submit(job_type="tests.count", payload={"key": "after-kill"})
    wait_for(lambda: _runs("after-kill") == 1)
    assert wakeups.notifications > before


def test_a_job_whose_notification_is_lost_is_still_fetched_by_the_safety_poll(
    idle_worker: dramatiq.Worker,
    broker: JobsRedisBroker,
    wakeups: QueueWakeups,
    wait_for: Callable[..., Any],
) -> None:
    broker.publishes_wakeups = False  # an enqueuer that does not notify: nothing is published
    wakeups.poll_ms = 200
    wakeups.wake_all()  # end the one-minute waits begun before the change
    before = wakeups.notifications

    job_submit(job_type="tests.count", payload={"key": "unannounced"})

    wait_for(lambda: _runs("unannounced") == 1)
    assert wakeups.notifications == before


def test_consumers_poll_with_the_back_off_while_the_listener_is_down(
    idle_worker: dramatiq.Worker, wakeups: QueueWakeups, wait_for: Callable[..., Any]
) -> None:
    wakeups.stop()
    assert not wakeups.listening

    job_submit(job_type="tests.count", payload={"key": "polled"})

    wait_for(lambda: _runs("polled") == 1)
    assert not any(_waiting(idle_worker, q) for q in _QUEUES)
    wakeups.start()  # the worker fixture's shutdown stops it again


def test_a_consumer_with_full_prefetch_fetches_again_as_soon_as_a_message_is_acked(
    broker: JobsRedisBroker, wakeups: QueueWakeups
) -> None:
    wakeups.start()
    try:
        assert wakeups.wait_until_listening(15)
        for key in ("first", "second"):
            job_submit(job_type="tests.count", payload={"key": key})
        consumer = broker.consume("default", prefetch=1, timeout=50)
        first = next(consumer)
        assert first is not None
        assert broker.client.llen(f"{broker.namespace}:default") == 1

        # Acked once the consumer waits (an ack before that would leave room to fetch at once).
        acking = threading.Thread(target=_ack_once_waiting, args=(consumer, first))
        acking.start()
        began = time.monotonic()
        assert next(consumer) is None  # prefetch full: waits, and the ack wakes it
        assert time.monotonic() - began < NEVER_MS / 2000
        second = next(consumer)
        assert second is not None and second.message_id != first.message_id
        consumer.ack(second)
        acking.join()
    finally:
        wakeups.stop()


def _ack_once_waiting(consumer: Any, message: Any) -> None:
    deadline = time.monotonic() + 15
    while not consumer.waiting_for_wakeup and time.monotonic() < deadline:
        time.sleep(0.005)
    consumer.ack(message)


def test_the_wake_up_channel_is_per_namespace_and_database(broker: JobsRedisBroker) -> None:
    db = broker.client.connection_pool.connection_kwargs["db"]
    assert wakeup_channel("ns", broker.client) == f"ns:__wakeups__:{db}"
    assert broker.wakeups.channel == wakeup_channel(broker.namespace, broker.client)


def test_requeueing_a_dead_workers_messages_wakes_their_queues(
    broker: JobsRedisBroker, wakeups: QueueWakeups, wait_for: Callable[..., Any]
) -> None:
    job_submit(job_type="tests.count", payload={"key": "orphan"})
    other = JobsRedisBroker(
        client=broker.client, namespace=broker.namespace, heartbeat_timeout=1_000
    )
    assert len(other.fetch_pairs("default", 10)) == 1
    queue_event = wakeups.event("default")
    wakeups.start()
    try:
        assert wakeups.wait_until_listening(15)
        queue_event.clear()

        assert broker.requeue_worker(other.broker_id, ["default"], forget=True)

        assert queue_event.wait(15), "the requeue published no wake-up for its queue"
        assert broker.client.llen(f"{broker.namespace}:default") == 1
    finally:
        wakeups.stop()
