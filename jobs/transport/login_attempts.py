"""Failed-login counters in Redis, shared by every web process.

One counter per username and one per client address, each counting failures
in a fixed window that starts with its first failure (the key's TTL) and
ends when the key expires. The username arrives hashed (any length, any
characters, one key size). ``jobs.admin.login_throttle`` decides what the
numbers mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# INCR every key; a key that has just been created (or, should one ever lack a TTL,
# any key without one) gets the window as its TTL, so no counter outlives its window.
_RECORD = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('incr', key)
    if counts[i] == 1 or redis.call('pttl', key) < 0 then
        redis.call('pexpire', key, ARGV[1])
    end
end
return counts
"""


@dataclass(frozen=True)
class FailureCount:
    """Failed logins counted in the current window, and the ms until that window ends."""

    failures: int
    remaining_ms: int


def _keys(namespace: str, *, username_hash: str, address: str) -> list[str]:
    return [
        f"{namespace}:admin-login:user:{username_hash}",
        f"{namespace}:admin-login:address:{address}",
    ]


def login_failures(
    client: redis.Redis, *, namespace: str, username_hash: str, address: str
) -> tuple[FailureCount, FailureCount]:
    """The username's and the address's failures in their windows (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for key in _keys(namespace, username_hash=username_hash, address=address):
        pipe.get(key)
        pipe.pttl(key)
    user_count, user_ttl, address_count, address_ttl = pipe.execute()
    return (
        FailureCount(int(user_count or 0), int(user_ttl)),
        FailureCount(int(address_count or 0), int(address_ttl)),
    )


def login_failure_record(
    client: redis.Redis, *, namespace: str, username_hash: str, address: str, window_ms: int
) -> tuple[int, int]:
    """Count one failure for the username and for the address; their counts now."""
    keys = _keys(namespace, username_hash=username_hash, address=address)
    user_count, address_count = client.eval(_RECORD, len(keys), *keys, window_ms)
    return int(user_count), int(address_count)


def login_failures_forget(client: redis.Redis, *, namespace: str, username_hash: str) -> None:
    """Clear the username's count (after a successful login); the address's stays."""
    client.delete(_keys(namespace, username_hash=username_hash, address="")[0])
