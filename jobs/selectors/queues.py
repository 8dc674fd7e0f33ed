"""The broker's live state: queue depths, the oldest waiting message, workers alive.

The admin dashboard, the ``jobs`` CLI, the API and the metrics exporter share
these. Depths are cluster-wide (every organization's messages share a queue).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dramatiq.brokers.redis import RedisBroker

from jobs.conf import jobs_settings
from jobs.queues import CONSUMED_QUEUES, band_queue_names
from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.queues import band_depths
from jobs.transport.workers import worker_entries


@dataclass
class QueueStats:
    """One queue, summed over its priority bands.

    Parameters:
      ready: messages waiting in Redis for a worker.
      in_flight: fetched by a worker (prefetched or running), not yet acknowledged.
      delayed: waiting for their ETA (delayed jobs and retries with backoff).
      dead: dead-lettered messages Redis still keeps.
      oldest_ready_age_seconds: age of the oldest waiting message, None when none wait.
      bands: messages waiting in each band's list, by Redis list name.
    """

    queue: str
    ready: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0
    oldest_ready_age_seconds: float | None = None
    bands: dict[str, int] = field(default_factory=dict)


def queue_stats(broker: JobsRedisBroker | None = None) -> list[QueueStats]:
    """Depths of every consumed queue, in two Redis round trips."""
    broker = broker or get_broker()
    names = [(queue, band) for queue in CONSUMED_QUEUES for band in band_queue_names(queue)]
    depths = band_depths(broker, [band for _queue, band in names])
    stats: dict[str, QueueStats] = {q: QueueStats(queue=q) for q in CONSUMED_QUEUES}
    now_ms = time.time() * 1000
    for (queue, band), depth in zip(names, depths, strict=True):
        s = stats[queue]
        s.ready += depth.ready
        s.in_flight += max(0, depth.bodies - depth.ready)
        s.delayed += depth.delayed
        s.dead += depth.dead
        s.bands[band] = depth.ready
        if depth.oldest_timestamp_ms is not None:
            age = max(0.0, (now_ms - depth.oldest_timestamp_ms) / 1000)
            current = s.oldest_ready_age_seconds
            s.oldest_ready_age_seconds = age if current is None else max(current, age)
    return list(stats.values())


@dataclass(frozen=True)
class WorkerInfo:
    broker_id: str
    host: str
    pid: int
    threads: int
    queues: list[str]
    started_at: float
    last_seen: float

    @property
    def seconds_since_seen(self) -> float:
        return max(0.0, time.time() - self.last_seen)


def workers(broker: RedisBroker | None = None, *, include_dead: bool = False) -> list[WorkerInfo]:
    """Worker processes from their registry entries; dead ones (silent past the timeout) are left out."""
    broker = broker or get_broker()
    cutoff = time.time() - jobs_settings.heartbeat_timeout_ms / 1000
    found: list[WorkerInfo] = []
    for data in worker_entries(broker):
        info = _worker_info(data)
        if info is not None and (include_dead or info.last_seen >= cutoff):
            found.append(info)
    return sorted(found, key=lambda w: (w.host, w.pid))


def _worker_info(data: dict[str, Any]) -> WorkerInfo | None:
    try:
        return WorkerInfo(
            broker_id=str(data["broker_id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            threads=int(data["threads"]),
            queues=list(data.get("queues") or []),
            started_at=float(data["started_at"]),
            last_seen=float(data["last_seen"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
