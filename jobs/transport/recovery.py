"""The Redis side of the recovery loop: its pass lock, its marker of Redis's data, heartbeats.

``<ns>:__recovery__`` is a hash that marks a Redis that still holds our data
(``epoch_ms``), when the last pass ran (``last_pass_ms``), until when
heartbeats are not trusted (``hold_until_ms``) and which waiting rows must be
re-sent after a data loss (``reconcile_before_ms``). ``<ns>:__recovery__.lock``
lets one pass run at a time. The policy is :mod:`jobs.services.recovery`.

Redis commands used: ``SET NX PX``/``EVAL`` (lock), ``HGET``/``HSET``/``HDEL``/
``HGETALL``, ``ZRANGEBYSCORE``/``ZSCORE``; never ``KEYS`` or ``SCAN``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import redis

from jobs.transport.broker import JobsRedisBroker
from jobs.transport.workers import workers_key

_RELEASE_LOCK = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


def state_key(broker: JobsRedisBroker) -> str:
    return f"{broker.namespace}:__recovery__"


def pass_lock_acquire(broker: JobsRedisBroker, *, ttl_ms: int) -> str | None:
    """Take the pass lock for ``ttl_ms``: a token to release it with, or None if held."""
    token = uuid.uuid4().hex
    taken = broker.client.set(f"{state_key(broker)}.lock", token, nx=True, px=ttl_ms)
    return token if taken else None


def pass_lock_release(broker: JobsRedisBroker, token: str) -> None:
    """Release the pass lock if this token still holds it."""
    broker.client.eval(_RELEASE_LOCK, 1, f"{state_key(broker)}.lock", token)


def state_read(broker: JobsRedisBroker) -> dict[str, int]:
    """The recovery marker's fields (empty: Redis has no marker, so it lost our data)."""
    raw = broker.client.hgetall(state_key(broker))
    return {k.decode(): int(v) for k, v in raw.items()} if raw else {}


def state_write(broker: JobsRedisBroker, fields: dict[str, int]) -> None:
    broker.client.hset(state_key(broker), mapping=fields)


def state_forget(broker: JobsRedisBroker, *fields: str) -> None:
    broker.client.hdel(state_key(broker), *fields)


def heartbeats_older_than(broker: JobsRedisBroker, *, cutoff_ms: int, limit: int) -> list[str]:
    """Broker ids whose Dramatiq heartbeat is older than ``cutoff_ms`` (at most ``limit``)."""
    heartbeats = f"{broker.namespace}:__heartbeats__"
    return [
        b.decode() if isinstance(b, bytes) else str(b)
        for b in broker.client.zrangebyscore(heartbeats, "-inf", f"({cutoff_ms}", 0, limit)
    ]


def last_seen_ms(broker: JobsRedisBroker, broker_ids: Sequence[str]) -> list[float | None]:
    """When each worker was last seen, in ms: the later of its heartbeat and its registry entry."""
    heartbeats = f"{broker.namespace}:__heartbeats__"
    with broker.client.pipeline(transaction=False) as pipe:
        for broker_id in broker_ids:
            pipe.zscore(heartbeats, broker_id)
            pipe.hget(workers_key(broker.namespace), broker_id)
        seen = pipe.execute()
    found: list[float | None] = []
    for i in range(len(broker_ids)):
        beat, entry = seen[2 * i], seen[2 * i + 1]
        times = [float(beat)] if beat is not None else []
        if entry is not None:
            times.append(_entry_seen_ms(entry))
        found.append(max(times) if times else None)
    return found


def _entry_seen_ms(entry: bytes) -> float:
    try:
        return float(json.loads(entry)["last_seen"]) * 1000
    except (ValueError, KeyError, TypeError):
        return 0.0


def worker_claim(broker: JobsRedisBroker, broker_id: str, *, ttl_ms: int) -> bool:
    """Claim the recovery of one dead worker for ``ttl_ms``, so one process of a host does it."""
    key = f"{state_key(broker)}.worker:{broker_id}"
    return bool(broker.client.set(key, "1", nx=True, px=ttl_ms))


def server_swap(broker: JobsRedisBroker) -> tuple[str | None, str | None]:
    """(the Redis server's run id at the last pass, its run id now), recording the new one.

    A different run id means another server answers at the same address: a
    failover or a restart. Both are None when INFO is not allowed (ACL).
    """
    try:
        run_id = str(broker.client.info("server").get("run_id", "")) or None
    except redis.exceptions.NoPermissionError:
        return None, None
    if run_id is None:
        return None, None
    previous = broker.client.getset(f"{state_key(broker)}.server", run_id)
    return (previous.decode() if isinstance(previous, bytes) else previous), run_id
