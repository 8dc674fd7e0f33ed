"""A leader lock (the scheduler's): one Redis key with a TTL, renewed by its holder.

Acquire is ``SET key me NX PX ttl``; renew and release are compare-and-set
scripts, so a scheduler whose lock expired (and was taken by another) can
neither extend nor delete the new holder's lock. When the leader dies, its
key expires and a standby takes it over within the TTL (plus one poll).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, and for how much longer (ms) unless renewed."""

    identity: str
    ttl_ms: int


def scheduler_identity() -> str:
    """``host:pid:random`` of this scheduler process, as stored in the lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLock:
    """A Redis lock with a TTL.

    Parameters:
      client: the Redis client (the broker's).
      key: the lock's key (``<namespace>:scheduler:leader``).
      ttl_ms: how long the lock lives without renewal, in ms.
      identity: this holder's value; unique per process.
    """

    def __init__(self, client: redis.Redis, key: str, *, ttl_ms: int, identity: str) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.identity = identity
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it. Returns whether this process holds it now."""
        return bool(self.client.set(self.key, self.identity, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lock by its TTL if this process still holds it."""
        return bool(self._renew(keys=[self.key], args=[self.identity, self.ttl_ms]))

    def release(self) -> bool:
        """Give the lock up (on shutdown) if this process holds it."""
        return bool(self._release(keys=[self.key], args=[self.identity]))

    def holder(self) -> LockHolder | None:
        """The current holder, or None when the lock is free."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.key)
            pipe.pttl(self.key)
            value, ttl = pipe.execute()
        if value is None:
            return None
        identity = value.decode() if isinstance(value, bytes) else str(value)
        return LockHolder(identity=identity, ttl_ms=max(int(ttl), 0))
