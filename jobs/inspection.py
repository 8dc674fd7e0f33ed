"""Reads of the broker's live state: queue depths, message ages, dead letters, workers.

The admin dashboard, the ``jobs`` CLI and the metrics exporter share these.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from dramatiq.brokers.redis import RedisBroker

from jobs.broker import CONSUMED_QUEUES, get_broker
from jobs.conf import jobs_settings
from jobs.middleware.heartbeat import workers_key
from jobs.queues import band_queue_names


@dataclass
class QueueStats:
    """One queue, summed over its priority bands.

    Parameters:
      ready: messages waiting in Redis for a worker.
      in_flight: fetched by a worker (prefetched or running), not yet acknowledged.
      delayed: waiting for their ETA (delayed jobs and retries with backoff).
      dead: dead-lettered messages Redis still keeps.
      oldest_ready_age_seconds: age of the oldest waiting message, None when none wait.
    """

    queue: str
    ready: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0
    oldest_ready_age_seconds: float | None = None
    bands: dict[str, int] = field(default_factory=dict)


def queue_stats(broker: RedisBroker | None = None) -> list[QueueStats]:
    """Depths of every consumed queue, in two Redis round trips."""
    broker = broker or get_broker()
    ns = broker.namespace
    names = [(queue, band) for queue in CONSUMED_QUEUES for band in band_queue_names(queue)]
    with broker.client.pipeline(transaction=False) as pipe:
        for _queue, band in names:
            pipe.llen(f"{ns}:{band}")
            pipe.hlen(f"{ns}:{band}.msgs")
            pipe.hlen(f"{ns}:{band}.DQ.msgs")
            pipe.zcard(f"{ns}:{band}.XQ")
            pipe.lindex(f"{ns}:{band}", 0)
        raw = pipe.execute()
    stats: dict[str, QueueStats] = {q: QueueStats(queue=q) for q in CONSUMED_QUEUES}
    heads: list[tuple[str, str, bytes]] = []
    for i, (queue, band) in enumerate(names):
        ready, msgs, delayed, dead, head = raw[i * 5 : i * 5 + 5]
        s = stats[queue]
        s.ready += ready
        s.in_flight += max(0, msgs - ready)
        s.delayed += delayed
        s.dead += dead
        s.bands[band] = ready
        if head is not None:
            heads.append((queue, band, head))
    if heads:
        with broker.client.pipeline(transaction=False) as pipe:
            for _queue, band, head in heads:
                pipe.hget(f"{ns}:{band}.msgs", head)
            bodies = pipe.execute()
        now_ms = time.time() * 1000
        for (queue, _band, _head), body in zip(heads, bodies, strict=True):
            if body is None:
                continue
            try:
                timestamp = float(json.loads(body)["message_timestamp"])
            except (ValueError, KeyError, TypeError):
                continue
            age = max(0.0, (now_ms - timestamp) / 1000)
            current = stats[queue].oldest_ready_age_seconds
            stats[queue].oldest_ready_age_seconds = age if current is None else max(current, age)
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
    """Worker processes from their heartbeats; dead ones (silent past the timeout) are left out."""
    broker = broker or get_broker()
    raw: dict[bytes, bytes] = broker.client.hgetall(workers_key(broker.namespace))
    cutoff = time.time() - jobs_settings.heartbeat_timeout_ms / 1000
    found: list[WorkerInfo] = []
    for value in raw.values():
        try:
            data: dict[str, Any] = json.loads(value)
            info = WorkerInfo(
                broker_id=str(data["broker_id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                threads=int(data["threads"]),
                queues=list(data.get("queues") or []),
                started_at=float(data["started_at"]),
                last_seen=float(data["last_seen"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if include_dead or info.last_seen >= cutoff:
            found.append(info)
    return sorted(found, key=lambda w: (w.host, w.pid))
