"""What a worker process holds of each queue, and taking back what it does not.

A fetch moves message ids from a queue into the worker's acks set
(``<ns>:__acks__.<broker id>.<queue>``) and returns their bodies. If the reply
never arrives (the connection breaks after Redis ran the script, or redis-py
re-sends the script after a reconnect and the first batch's reply is lost),
those ids sit in the acks set of a worker that is alive and never heard of
them. The same happens to fetched messages a stopping consumer could not put
back during an outage. Dramatiq takes an acks set back only when its worker
dies, so while the worker lives those jobs wait forever, their rows ``queued``.

:class:`HeldMessages` counts, per queue, the Redis ids this process fetched
and has not yet acknowledged, dead-lettered or put back. A consumer calls
:meth:`HeldMessages.reclaim` when it starts and then every
``broker.reclaim_interval_seconds`` (:data:`RECLAIM_INTERVAL_SECONDS`): every
id in its acks set that the process does not hold goes back to the tail of
its queue. Only the consumer of a queue fetches for it, from its own thread,
so an id fetched and not yet counted cannot be mistaken for an orphan; an id
acknowledged meanwhile has already left the acks set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

#: How often a consumer takes back orphans while it runs, in seconds.
RECLAIM_INTERVAL_SECONDS = 10.0

# Put back the ids of a worker's acks set for one queue that it does not hold.
# KEYS: namespace. ARGV: worker id, queue name, then the ids held.
# Returns the ids put back (an id whose body is gone is only dropped).
_RECLAIM = """
local ns, worker, queue = KEYS[1], ARGV[1], ARGV[2]
local acks = ns .. ":__acks__." .. worker .. "." .. queue
local list = ns .. ":" .. queue
local bodies = list .. ".msgs"
local held = {}
for i = 3, #ARGV do
    held[ARGV[i]] = true
end
local out = {}
for _, id in ipairs(redis.call("smembers", acks)) do
    if not held[id] then
        redis.call("srem", acks, id)
        if redis.call("hexists", bodies, id) == 1 then
            redis.call("rpush", list, id)
            out[#out + 1] = id
        end
    end
end
return out
"""


class HeldMessages:
    """The Redis ids a worker process holds, per queue. Thread-safe."""

    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}
        self._script = client.register_script(_RECLAIM)

    def add(self, queue_name: str, redis_ids: Iterable[str]) -> None:
        with self._lock:
            self._held.setdefault(queue_name, set()).update(redis_ids)

    def discard(self, queue_name: str, redis_ids: Iterable[str]) -> None:
        with self._lock:
            held = self._held.get(queue_name)
            if held is not None:
                held.difference_update(redis_ids)

    def discard_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Forget ``(queue name, redis id)`` pairs, as the acker sends them."""
        with self._lock:
            for queue_name, redis_id in pairs:
                held = self._held.get(queue_name)
                if held is not None:
                    held.discard(redis_id)

    def forget_queue(self, queue_name: str) -> None:
        """Forget everything held of a queue (its holder dropped it from memory)."""
        with self._lock:
            self._held.pop(queue_name, None)

    def reclaim(self, namespace: str, broker_id: str, queue_name: str) -> list[str]:
        """Put back what this worker's acks set of ``queue_name`` holds beyond this process.

        Call it only from the thread that fetches for ``queue_name``. Returns
        the Redis ids put back. Raises Redis errors.
        """
        with self._lock:
            held = list(self._held.get(queue_name, ()))
        raw = self._script(keys=[namespace], args=[broker_id, queue_name, *held])
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
