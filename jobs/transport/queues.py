"""Raw reads and removals of the messages Redis holds for a queue's priority bands.

A band ``<ns>:<band>`` is Dramatiq's list of waiting message ids, with the
bodies in ``<band>.msgs`` (waiting and in-flight alike), the delayed ones in
``<band>.DQ`` / ``<band>.DQ.msgs`` and the dead-lettered ones in ``<band>.XQ``
/ ``<band>.XQ.msgs`` (see ``dramatiq/brokers/redis/dispatch.lua``). Queues and
their bands are declared in :mod:`jobs.queues`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jobs.transport.broker import JobsRedisBroker

#: Message ids handled per Redis call when reading or deleting many.
CHUNK = 1_000


@dataclass(frozen=True)
class BandDepth:
    """One band's counts, and the enqueue time of its oldest waiting message.

    Parameters:
      ready: ids waiting in the list.
      bodies: bodies stored for the band (waiting and in flight).
      delayed: bodies of delayed messages.
      dead: dead-lettered messages Redis still keeps.
      oldest_timestamp_ms: ``message_timestamp`` of the list's head, None when empty.
    """

    band: str
    ready: int
    bodies: int
    delayed: int
    dead: int
    oldest_timestamp_ms: float | None


def band_depths(broker: JobsRedisBroker, bands: Sequence[str]) -> list[BandDepth]:
    """Counts of every band, in two round trips (the heads' bodies in the second)."""
    ns = broker.namespace
    with broker.client.pipeline(transaction=False) as pipe:
        for band in bands:
            pipe.llen(f"{ns}:{band}")
            pipe.hlen(f"{ns}:{band}.msgs")
            pipe.hlen(f"{ns}:{band}.DQ.msgs")
            pipe.zcard(f"{ns}:{band}.XQ")
            pipe.lindex(f"{ns}:{band}", 0)
        raw = pipe.execute()
    heads = [(i, band, raw[i * 5 + 4]) for i, band in enumerate(bands) if raw[i * 5 + 4]]
    stamps: dict[int, float | None] = {}
    if heads:
        with broker.client.pipeline(transaction=False) as pipe:
            for _i, band, head in heads:
                pipe.hget(f"{ns}:{band}.msgs", head)
            bodies = pipe.execute()
        for (i, _band, _head), body in zip(heads, bodies, strict=True):
            stamp = _field(body, "message_timestamp")
            stamps[i] = float(stamp) if isinstance(stamp, int | float) else None
    return [
        BandDepth(
            band=band,
            ready=raw[i * 5],
            bodies=raw[i * 5 + 1],
            delayed=raw[i * 5 + 2],
            dead=raw[i * 5 + 3],
            oldest_timestamp_ms=stamps.get(i),
        )
        for i, band in enumerate(bands)
    ]


def band_take_waiting(broker: JobsRedisBroker, band: str) -> list[bytes]:
    """Remove a band's waiting and delayed messages; returns their bodies.

    Each list is read and deleted in one transaction, so a message sent
    meanwhile is either taken or left untouched, never lost silently.
    Messages a worker already fetched are not touched.
    """
    ns = broker.namespace
    with broker.client.pipeline(transaction=True) as pipe:
        pipe.lrange(f"{ns}:{band}", 0, -1)
        pipe.delete(f"{ns}:{band}")
        ids, _ = pipe.execute()
    bodies: list[bytes] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        with broker.client.pipeline(transaction=True) as pipe:
            pipe.hmget(f"{ns}:{band}.msgs", chunk)
            pipe.hdel(f"{ns}:{band}.msgs", *chunk)
            found, _ = pipe.execute()
        bodies.extend(b for b in found if b is not None)
    # Delayed messages: every body, including those a worker holds until their ETA.
    with broker.client.pipeline(transaction=True) as pipe:
        pipe.hvals(f"{ns}:{band}.DQ.msgs")
        pipe.delete(f"{ns}:{band}.DQ", f"{ns}:{band}.DQ.msgs")
        delayed, _ = pipe.execute()
    bodies.extend(delayed)
    return bodies


def dead_message_ids(broker: JobsRedisBroker, bands: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Every dead-lettered message Redis keeps: ``{job id: (XQ key, redis message id)}``."""
    found: dict[str, tuple[str, str]] = {}
    for band in bands:
        key = f"{broker.namespace}:{band}.XQ"
        for redis_id, body in broker.client.hscan_iter(f"{key}.msgs", count=500):
            job_id = message_id(body)
            if job_id is not None:
                rid = redis_id.decode() if isinstance(redis_id, bytes) else str(redis_id)
                found[job_id] = (key, rid)
    return found


def dead_messages_remove(
    broker: JobsRedisBroker, bands: Iterable[str], job_ids: Iterable[str] | None
) -> int:
    """Delete Redis's copies of dead-lettered messages (all of them when ``job_ids`` is None).

    Redis keys dead letters by a per-send id, so the job ids are matched by
    decoding the stored messages. Returns how many messages were deleted.
    """
    wanted = None if job_ids is None else {str(i) for i in job_ids}
    removed = 0
    for band in bands:
        xq = f"{broker.namespace}:{band}.XQ"
        xq_msgs = f"{xq}.msgs"
        if wanted is None:
            with broker.client.pipeline(transaction=True) as pipe:
                pipe.hlen(xq_msgs)
                pipe.delete(xq, xq_msgs)
                count, _ = pipe.execute()
            removed += int(count)
            continue
        matched = [
            redis_id
            for redis_id, body in broker.client.hscan_iter(xq_msgs, count=CHUNK)
            if message_id(body) in wanted
        ]
        if matched:
            with broker.client.pipeline(transaction=True) as pipe:
                pipe.zrem(xq, *matched)
                pipe.hdel(xq_msgs, *matched)
                pipe.execute()
            removed += len(matched)
    return removed


def dead_messages_expire(
    broker: JobsRedisBroker, queue_names: Iterable[str], *, before_ms: int, limit: int
) -> int:
    """Delete up to ``limit`` dead letters per queue that were dead-lettered before ``before_ms``."""
    expired = 0
    for queue in queue_names:
        xq = f"{broker.namespace}:{queue}.XQ"
        ids = broker.client.zrangebyscore(xq, "-inf", before_ms, 0, limit)
        if ids:
            with broker.client.pipeline(transaction=False) as pipe:
                pipe.zrem(xq, *ids)
                pipe.hdel(f"{xq}.msgs", *ids)
                pipe.execute()
            expired += len(ids)
    return expired


def message_id(body: bytes | None) -> str | None:
    """The Dramatiq message id (the job id) in a stored body, None when it has none."""
    value = _field(body, "message_id")
    return None if value is None else str(value)


def _field(body: bytes | None, name: str) -> str | float | None:
    if body is None:
        return None
    try:
        value = json.loads(body)[name]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str | int | float) else None
