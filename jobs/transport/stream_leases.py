"""Caps on open event streams (SSE) per API key and per organization, shared by every web process.

Each cap is a lease-based semaphore in Redis, like the running-job slots of
:mod:`jobs.transport.limits`: one sorted set per holder (an API key, or a staff
user's session) and one per organization, whose members are the open streams
scored by the expiry of their lease (ms). A stream renews its lease while it
lives and frees it when it ends; a web process that dies without freeing its
slots loses them when the leases expire, with nobody cleaning up.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from jobs.transport.broker import get_broker
from jobs.transport.limits import registered_script

logger = logging.getLogger(__name__)

#: A stream's lease lasts this many heartbeats: it survives a late renewal or two.
LEASE_HEARTBEATS = 3

# KEYS[1] the holder's streams, KEYS[2] the organization's. ARGV: now (ms), the
# stream's id, the holder's cap, the organization's cap, the lease (ms).
# Returns 0 (taken in both), 1 (the holder is at its cap) or 2 (the organization is).
_ACQUIRE = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], lease + 60000)
end
return 0
"""


class StreamCap(enum.StrEnum):
    """The cap that refused a stream."""

    HOLDER = "key"  # API_EVENTS_MAX_STREAMS_PER_KEY
    ORGANIZATION = "organization"  # API_EVENTS_MAX_STREAMS_PER_ORGANIZATION


@dataclass
class StreamLease:
    """One open stream's slots; renew it every heartbeat and release it once, when it ends.

    Parameters:
      keys: the holder's and the organization's sorted sets.
      lease_ms: how long a slot outlives its last renewal.
    """

    keys: tuple[str, str]
    member: str
    lease_ms: int
    released: bool = field(default=False)

    def renew(self) -> None:
        """Push the lease's expiry back (a Redis error is logged: the lease expires later)."""
        if self.released:
            return
        expiry = _now_ms() + self.lease_ms
        try:
            with get_broker().client.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zadd(key, {self.member: expiry})
                    pipe.pexpire(key, self.lease_ms + 60_000)
                pipe.execute()
        except redis.RedisError as exc:
            logger.warning("Could not renew the lease of event stream %s: %s", self.member, exc)

    def release(self) -> None:
        """Free both slots; only the first call does anything."""
        if self.released:
            return
        self.released = True
        try:
            with get_broker().client.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zrem(key, self.member)
                pipe.execute()
        except redis.RedisError as exc:
            logger.warning(
                "Could not free the slots of event stream %s (%s); they expire in %d ms.",
                self.member,
                exc,
                self.lease_ms,
            )


def stream_leases_renew(leases: Iterable[StreamLease]) -> None:
    """Renew many streams' leases in one round trip (an async process renews all of its own).

    A Redis error is logged: the leases expire later, after LEASE_HEARTBEATS heartbeats.
    """
    now = _now_ms()
    live = [lease for lease in leases if not lease.released]
    if not live:
        return
    try:
        with get_broker().client.pipeline(transaction=False) as pipe:
            for lease in live:
                for key in lease.keys:
                    # XX: a lease released meanwhile (on the event loop) is not brought back.
                    pipe.zadd(key, {lease.member: now + lease.lease_ms}, xx=True)
            for key in {key for lease in live for key in lease.keys}:
                pipe.pexpire(key, max(lease.lease_ms for lease in live) + 60_000)
            pipe.execute()
    except redis.RedisError as exc:
        logger.warning("Could not renew the leases of %d event streams: %s", len(live), exc)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _key(*parts: object) -> str:
    return ":".join([get_broker().namespace, "streams", *map(str, parts)])


def event_stream_acquire(
    *,
    holder: str,
    organization_id: int,
    per_holder: int,
    per_organization: int,
    lease_ms: int,
) -> StreamLease | StreamCap:
    """Take a stream slot of ``holder`` and of its organization, or name the cap that is full.

    ``holder`` names who opens the stream (``key:<api key id>`` or
    ``user:<user id>``). One Redis round trip; a RedisError propagates (the
    API answers 503).
    """
    keys = (_key(holder), _key("organization", organization_id))
    member = uuid.uuid4().hex
    verdict = registered_script(_ACQUIRE)(
        keys=list(keys),
        args=[_now_ms(), member, max(1, per_holder), max(1, per_organization), lease_ms],
    )
    if verdict == 1:
        return StreamCap.HOLDER
    if verdict == 2:
        return StreamCap.ORGANIZATION
    return StreamLease(keys=keys, member=member, lease_ms=lease_ms)


def event_streams_open(*, holder: str | None = None, organization_id: int | None = None) -> int:
    """How many streams a holder, or an organization, has open now (expired leases excluded)."""
    key = _key(holder) if holder is not None else _key("organization", organization_id)
    return int(get_broker().client.zcount(key, _now_ms(), "+inf"))
