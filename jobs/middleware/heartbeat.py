"""Registers each worker process in Redis and refreshes it, for dashboards and liveness checks."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from jobs.conf import jobs_settings

logger = logging.getLogger(__name__)


def workers_key(namespace: str) -> str:
    return f"{namespace}:__workers__"


class WorkerHeartbeat(Middleware):
    """Writes ``{namespace}:__workers__[broker_id]`` every few seconds while a worker runs.

    Dramatiq's own heartbeats (used to requeue a dead worker's messages) also
    count web processes that merely enqueue; this registry lists only workers,
    with their host, pid, threads and queues.

    Parameters:
      interval_ms: how often the entry is refreshed, in milliseconds.
    """

    def __init__(self, *, interval_ms: int = 5_000) -> None:
        self.interval = interval_ms / 1000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._entry: dict[str, Any] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._entry = {
            "broker_id": broker.broker_id,  # type: ignore[attr-defined]
            "host": socket.gethostname(),
            "pid": os.getpid(),
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
        try:
            broker.client.hdel(  # type: ignore[attr-defined]
                workers_key(broker.namespace),  # type: ignore[attr-defined]
                broker.broker_id,  # type: ignore[attr-defined]
            )
        except redis.RedisError:
            logger.warning("Could not unregister worker %s from Redis.", self._entry.get("pid"))

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stop.wait(self.interval):
            self._beat(broker)

    def _beat(self, broker: dramatiq.Broker) -> None:
        entry = {**self._entry, "last_seen": time.time()}
        try:
            broker.client.hset(  # type: ignore[attr-defined]
                workers_key(broker.namespace),  # type: ignore[attr-defined]
                broker.broker_id,  # type: ignore[attr-defined]
                json.dumps(entry),
            )
        except redis.RedisError as exc:
            logger.warning("Worker heartbeat to Redis failed: %s", exc)


def heartbeat_interval_ms() -> int:
    return max(1_000, jobs_settings.heartbeat_timeout_ms // 6)
