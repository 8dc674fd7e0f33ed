"""The registry of worker processes in Redis: who runs, where, with how many threads.

Each worker process writes ``<namespace>:__workers__[broker_id]`` (a JSON
entry) every few seconds while it runs, and removes it at shutdown. Dramatiq's
own heartbeats (``<namespace>:__heartbeats__``) also count processes that
merely enqueue; this registry lists only workers.
"""

from __future__ import annotations

import json
from typing import Any

from dramatiq.brokers.redis import RedisBroker

from jobs.transport.broker import JobsRedisBroker


def workers_key(namespace: str) -> str:
    return f"{namespace}:__workers__"


def worker_entry_write(broker: JobsRedisBroker, entry: dict[str, Any]) -> None:
    """Write (or refresh) this worker process's entry. Raises ``redis.RedisError``."""
    broker.client.hset(workers_key(broker.namespace), broker.broker_id, json.dumps(entry))


def worker_entry_remove(broker: JobsRedisBroker, broker_id: str | None = None) -> None:
    """Remove a worker process's entry (this one's by default). Raises ``redis.RedisError``."""
    broker.client.hdel(workers_key(broker.namespace), broker_id or broker.broker_id)


def worker_entries(broker: RedisBroker) -> list[dict[str, Any]]:
    """Every entry of the registry, decoded; undecodable entries are left out."""
    raw: dict[bytes, bytes] = broker.client.hgetall(workers_key(broker.namespace))
    entries = []
    for value in raw.values():
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
