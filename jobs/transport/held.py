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

# Put back ids of a worker's acks set for one queue, each only if still there.
# KEYS: namespace. ARGV: worker id, queue name, then the ids (not held by the worker).
# Returns the ids put back (an id whose body is gone is only dropped).
_RECLAIM = """
local ns, worker, queue = KEYS[1], ARGV[1], ARGV[2]
local acks = ns .. ":__acks__." .. worker .. "." .. queue
local list = ns .. ":" .. queue
local bodies = list .. ".msgs"
local out = {}
for i = 3, #ARGV do
    local id = ARGV[i]
    if redis.call("srem", acks, id) == 1 and redis.call("hexists", bodies, id) == 1 then
        redis.call("rpush", list, id)
        out[#out + 1] = id
    end
end
return out
"""


class HeldMessages:
    """The Redis ids a worker process holds, per queue. Thread-safe."""

    def __init__(self, client: Any) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}
        #: Held ids whose acknowledgement is handed to the acker and not yet sent.
        self._acking: dict[str, set[str]] = {}
        self._client = client
        self._script = client.register_script(_RECLAIM)

    def add(self, queue_name: str, redis_ids: Iterable[str]) -> None:
        with self._lock:
            self._held.setdefault(queue_name, set()).update(redis_ids)

    def acking(self, queue_name: str, redis_id: str) -> None:
        """Note that a held id's acknowledgement waits in the acker."""
        with self._lock:
            self._acking.setdefault(queue_name, set()).add(redis_id)

    def discard(self, queue_name: str, redis_ids: Iterable[str]) -> None:
        with self._lock:
            held = self._held.get(queue_name)
            if held is not None:
                held.difference_update(redis_ids)

    def discard_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Forget ``(queue name, redis id)`` pairs, as the acker sends them."""
        with self._lock:
            for queue_name, redis_id in pairs:
                for ids in (self._held.get(queue_name), self._acking.get(queue_name)):
                    if ids is not None:
                        ids.discard(redis_id)

    def forget_queue(self, queue_name: str) -> None:
        """Forget what is held of a queue (its holder dropped it from memory).

        Ids whose acknowledgement waits in the acker stay held: they ran (a delayed
        message was moved to its queue), and putting them back would deliver them again.
        """
        with self._lock:
            self._held[queue_name] = set(self._acking.get(queue_name, ()))

    def reclaim(self, namespace: str, broker_id: str, queue_name: str) -> list[str]:
        """Put back what this worker's acks set of ``queue_name`` holds beyond this process.

        Call it only from the thread that fetches for ``queue_name``. Returns
        the Redis ids put back. Raises Redis errors.
        """
        acks = f"{namespace}:__acks__.{broker_id}.{queue_name}"
        members = {
            m.decode() if isinstance(m, bytes) else str(m) for m in self._client.smembers(acks)
        }
        with self._lock:
            # Read after the acks set: an id acknowledged in between has left both, and
            # one that leaves ``held`` only now is checked by the script's SREM.
            orphans = members - self._held.get(queue_name, set())
        if not orphans:
            return []
        raw = self._script(keys=[namespace], args=[broker_id, queue_name, *sorted(orphans)])
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
