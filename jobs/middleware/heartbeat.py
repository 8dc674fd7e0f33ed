"""Registers each worker process in Redis and refreshes it, for dashboards and liveness checks."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from jobs.conf import jobs_settings
from jobs.outages import REDIS
from jobs.processes import this_process
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.workers import worker_entry_remove, worker_entry_write

logger = logging.getLogger(__name__)


class WorkerHeartbeat(Middleware):
    """Keeps this worker process's entry in the worker registry fresh while it runs.

    The registry (:mod:`jobs.transport.workers`) lists only workers, with
    their host, pid (and its start time), threads and queues; dashboards,
    liveness checks and same-host restart recovery read it.

    Parameters:
      interval_ms: how often the entry is refreshed, in milliseconds.
    """

    def __init__(self, *, interval_ms: int = 5_000) -> None:
        self.interval = interval_ms / 1000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._entry: dict[str, Any] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        me = this_process()
        self._entry = {
            "broker_id": broker.broker_id,  # type: ignore[attr-defined]
            "host": jobs_settings.worker_host,
            "pid": me.pid,
            # With the pid, tells this process from a later one given the same pid, so a
            # worker starting on this host can recover this one's jobs at once if it dies.
            "pid_started": me.started,
            "boot_id": me.boot_id,
            "threads": worker.worker_threads,
            "queues": sorted(worker.consumer_whitelist or []),
            "started_at": time.time(),
        }
        self._stop.clear()
        self._beat(broker)
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name="worker-heartbeat", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if not isinstance(broker, JobsRedisBroker):
            return
        try:
            worker_entry_remove(broker)
        except redis.RedisError:
            logger.warning("Could not unregister worker %s from Redis.", self._entry.get("pid"))

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stop.wait(self.interval):
            self._beat(broker)

    def _beat(self, broker: dramatiq.Broker) -> None:
        if not isinstance(broker, JobsRedisBroker):
            return
        try:
            worker_entry_write(broker, {**self._entry, "last_seen": time.time()})
        except redis.RedisError as exc:
            REDIS.failed(exc)
            logger.debug("Worker heartbeat to Redis failed: %s", exc)
        else:
            REDIS.recovered()


def heartbeat_interval_ms() -> int:
    return max(1_000, jobs_settings.heartbeat_timeout_ms // 6)
