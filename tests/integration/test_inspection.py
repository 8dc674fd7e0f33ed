"""Queue depths, message ages and worker heartbeats read from real Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dramatiq
import pytest

from jobs.selectors.queues import queue_stats, workers
from jobs.services import job_submit

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_queue_stats_count_ready_and_delayed_messages_per_queue(broker: Any) -> None:
    for priority in (1, 5, 9):
        job_submit(job_type="diagnostics.echo", payload={"message": "m"}, priority=priority)
    job_submit(
        job_type="diagnostics.echo", payload={"message": "later"}, delay=timedelta(minutes=5)
    )

    stats = {s.queue: s for s in queue_stats(broker)}

    assert stats["default"].ready == 3
    assert stats["default"].delayed == 1
    assert stats["default"].bands == {"default.urgent": 1, "default": 1, "default.bulk": 1}
    assert stats["default"].oldest_ready_age_seconds is not None
    assert 0 <= stats["default"].oldest_ready_age_seconds < 60
    assert stats["email"].ready == 0
    assert stats["email"].oldest_ready_age_seconds is None


def test_a_running_worker_is_listed_from_its_heartbeat_and_gone_after_shutdown(
    broker: Any,
) -> None:
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        alive = workers(broker)
        assert [w.broker_id for w in alive] == [broker.broker_id]
        assert alive[0].threads == 2
    finally:
        worker.stop()

    assert workers(broker) == []
