"""Worker DB connections: no probe per message while busy, and a dead connection loses no job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from jobs.middleware.db_connections import DbConnections
from jobs.models import Job, JobStatus
from jobs.services import job_submit
from jobs.transport.broker import get_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _in_thread(fn: Any) -> Any:
    """Run fn in a fresh thread (its own Django connection, like a worker thread)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["value"]


def test_a_connection_used_a_moment_ago_is_not_probed_again() -> None:
    middleware = DbConnections(recent_use_seconds=60)

    def two_messages() -> bool:
        middleware.before_process_message(get_broker(), None)
        Job.objects.count()
        middleware.after_process_message(get_broker(), None)
        middleware.before_process_message(get_broker(), None)
        return bool(connection.health_check_done)  # type: ignore[attr-defined]

    assert _in_thread(two_messages) is True


def test_an_idle_connection_is_probed_before_its_next_message() -> None:
    middleware = DbConnections(recent_use_seconds=0)

    def two_messages() -> bool:
        middleware.before_process_message(get_broker(), None)
        Job.objects.count()
        middleware.after_process_message(get_broker(), None)
        middleware.before_process_message(get_broker(), None)
        return bool(connection.health_check_done)  # type: ignore[attr-defined]

    assert _in_thread(two_messages) is False


@pytest.fixture
def trusting_worker_middleware() -> Iterator[DbConnections]:
    middleware = next(m for m in get_broker().middleware if isinstance(m, DbConnections))
    saved = middleware.recent_use_seconds
    middleware.recent_use_seconds = 3_600
    yield middleware
    middleware.recent_use_seconds = saved


def test_a_job_survives_its_worker_connection_dying_between_messages(
    broker: Any, worker: Any, wait_for: Any, trusting_worker_middleware: DbConnections
) -> None:
    first = job_submit(job_type="diagnostics.echo", payload={"message": "one"}).job
    wait_for(lambda: Job.objects.get(pk=first.pk).status == JobStatus.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    second = job_submit(job_type="diagnostics.echo", payload={"message": "two"}).job

    wait_for(lambda: Job.objects.get(pk=second.pk).status == JobStatus.SUCCEEDED, timeout=30)
    assert Job.objects.get(pk=second.pk).result == {"message": "two"}
