"""Acknowledges a worker process's messages in batches, off the job threads.

Dramatiq acknowledges each message from the thread that ran it: one Redis
round trip per job, after the job's final state is in the ledger. That ack
can safely lag by a few milliseconds: should the process die first, the
message is delivered again and the ledger, which already says how the job
ended, acknowledges the duplicate without running it. So a job thread hands
its ack to this process's acker and takes its next message; the acker sends
whatever has piled up in one script call, with Dramatiq's own rule (the body
is deleted only if the id was still in this worker's acks set).

A message whose job's outcome the ledger writer is still committing carries
an :class:`AckGate`: its ack joins the acker only once that commit is done,
so a message is never acknowledged before the ledger knows how its job
ended. Negative acknowledgements (dead letters) stay immediate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from jobs.background import BackgroundThread
from jobs.outages import REDIS

logger = logging.getLogger(__name__)

#: Most acks sent by one script call.
MAX_BATCH = 1_000

#: Pauses between tries while Redis is unreachable.
RETRY_DELAYS = (0.05, 0.25, 1.0, 2.0, 5.0)

# ARGV: now (ms), worker id, then (queue name, message id) pairs.
_ACK_MANY = """
local ns, now, worker = KEYS[1], ARGV[1], ARGV[2]
local acks = ns .. ":__acks__." .. worker .. "."
for i = 3, #ARGV, 2 do
    local queue, id = ARGV[i], ARGV[i + 1]
    if redis.call("srem", acks .. queue, id) > 0 then
        redis.call("hdel", ns .. ":" .. queue .. ".msgs", id)
    end
end
redis.call("zadd", ns .. ":__heartbeats__", now, worker)
return (#ARGV - 2) / 2
"""


class AckGate:
    """Holds a message's ack until its job's outcome is committed. Thread-safe, opened once."""

    __slots__ = ("_lock", "_opened", "_then")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened = False
        self._then: Callable[[], None] | None = None

    def then(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the gate opens (now, if it already has)."""
        with self._lock:
            if not self._opened:
                self._then = action
                return
        action()

    def open(self) -> None:
        with self._lock:
            self._opened = True
            action, self._then = self._then, None
        if action is not None:
            action()


class Acker(BackgroundThread):
    """The per-process ack thread of a broker. Thread-safe; started by the first ack."""

    def __init__(self, broker: Any) -> None:
        super().__init__("acker")
        self.broker = broker
        self._script = broker.client.register_script(_ACK_MANY)
        self._pending: list[tuple[str, str]] = []
        self._in_flight = 0
        #: Script calls made and acks sent, for tests and the curious.
        self.calls = 0
        self.acked = 0

    def ack(self, queue_name: str, redis_message_id: str) -> None:
        with self._cond:
            self._ensure_started()
            self._pending.append((queue_name, redis_message_id))
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ack handed over so far is sent; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (giving up after ``timeout``), then stop the thread."""
        if not self.flush(timeout):
            with self._cond:
                count = len(self._pending)
            logger.warning(
                "Could not acknowledge %d message(s) before shutdown; they are delivered "
                "again later and acknowledged without running (the ledger has their outcome).",
                count,
            )
        self._stop(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch(self._pending, MAX_BATCH)
                if not batch:
                    return
                self._in_flight = len(batch)
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[tuple[str, str]]) -> None:
        args: list[Any] = [int(time.time() * 1000), self.broker.broker_id]
        for queue_name, redis_id in batch:
            args += [queue_name, redis_id]
        tries = 0
        while True:
            try:
                self._script(keys=[self.broker.namespace], args=args)
                self.broker.held.discard_pairs(batch)
                REDIS.recovered()
                self.calls += 1
                self.acked += len(batch)
                return
            except redis.RedisError as exc:
                if self._closing:
                    logger.warning(
                        "Could not acknowledge %d message(s) (%s); they are delivered again "
                        "later and acknowledged without running.",
                        len(batch),
                        exc,
                    )
                    return
                REDIS.failed(exc)
                if tries == 0:
                    logger.info("Acknowledgements wait for Redis: %s", exc)
                time.sleep(RETRY_DELAYS[min(tries, len(RETRY_DELAYS) - 1)])
                tries += 1
