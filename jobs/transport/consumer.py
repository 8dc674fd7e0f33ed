"""The Redis consumer of a worker: fetches in batches, never strands a message.

:class:`JobsRedisConsumer` subclasses ``dramatiq.brokers.redis._RedisConsumer``,
a private class of Dramatiq. It is the only such subclass in the project, and
it exists because Dramatiq's consumer loses track of messages in ways that
cannot be fixed from a middleware (see :mod:`jobs.transport.broker`): it
dead-letters an undecodable body by its Redis id instead of raising, fetches
in batches through our own script, hands fetched messages to the broker's
fetch listeners, batches acks, waits for queue wake-ups instead of polling, and
takes back what its acks set holds that the process does not
(:mod:`jobs.transport.held`).
Checked against Dramatiq 2.2.1 (``_RedisConsumer.__init__``, ``ack``, ``nack``,
``requeue``, ``close``, ``__next__`` and the ``message_cache`` /
``queued_message_ids`` / ``misses`` attributes); re-check them on any upgrade.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ActorNotFound, ConnectionClosed, DecodeError

from jobs.transport.acks import AckGate

logger = logging.getLogger(__name__)

#: Redis errors after which an operation is worth retrying once Redis is back.
TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class JobsRedisConsumer(_RedisConsumer):
    """A Redis consumer that dead-letters what it cannot decode and keeps its neighbours.

    Redis connection errors and timeouts are raised as ``ConnectionClosed``
    from every operation, so Dramatiq's worker retries acks until Redis is
    back and restarts the consumer instead of losing the thread.

    Idle, it waits on its queue's wake-up event (``jobs.wakeups``) while the
    process's listener is subscribed, and polls with Dramatiq's back-off
    (up to ``timeout``) while it is not.
    """

    broker: Any

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        #: Fetched and decoded, not yet handed to the worker (counted in queued_message_ids).
        self.ready: list[MessageProxy] = []
        self.wakeup = broker.wakeups.event(queue_name)
        # Set while prefetch is (nearly) full: an ack must then wake the consumer to fetch more.
        self._saturated = False
        #: Fetch only once this much room is free: a batch of messages per round trip
        #: instead of one fetch (a Lua call) for every ack.
        self.refill_at = max(1, prefetch // 4)
        #: True while idle and waiting for a wake-up (not while sleeping a back-off).
        self.waiting_for_wakeup = False
        self.held = broker.held
        if queue_name.endswith(".DQ"):
            # Dramatiq drops the delayed messages a consumer thread held in memory when
            # its consumer fails; a new one takes them back from the acks set.
            self.held.forget_queue(queue_name)
        #: When to take back orphans next: at once, then every ``broker.reclaim_interval_seconds``.
        self._reclaim_at = 0.0

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids)

    def ack(self, message: Any) -> None:
        # Batched and sent by the process's acker; see jobs.acks for why that is safe.
        self.queued_message_ids.discard(message.message_id)
        acker, queue_name = self.broker.acker, self.queue_name
        redis_id = message.options["redis_message_id"]
        self.held.acking(queue_name, redis_id)
        gate: AckGate | None = getattr(message, "jobs_ack_gate", None)
        if gate is None:
            acker.ack(queue_name, redis_id)
        else:  # the ledger is still committing the job's outcome
            gate.then(lambda: acker.ack(queue_name, redis_id))
        self._wake_if_room()

    def _wake_if_room(self) -> None:
        # A consumer whose prefetch was full may fetch again once a batch fits.
        if self._saturated and self.prefetch - self.outstanding_message_count >= self.refill_at:
            self.wakeup.set()

    def close(self) -> None:
        # Fetched messages never handed to the worker go back now (their claims
        # given back), not when the recovery loop finds this worker dead.
        leftover, self.ready = self.ready, []
        if leftover:
            try:
                self.requeue(leftover)
            except ConnectionClosed:
                logger.warning(
                    "Could not put %d fetched message(s) of %s back; the recovery loop will.",
                    len(leftover),
                    self.queue_name,
                )
            for proxy in leftover:
                self.queued_message_ids.discard(proxy.message_id)
        # Acks handed over by the job threads leave before the consumer does.
        self.broker.acker.flush()
        super().close()

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)
        except TRANSIENT_ERRORS as exc:
            raise ConnectionClosed(exc) from None
        finally:
            self._wake_if_room()
        self.held.discard(self.queue_name, [message.options["redis_message_id"]])

    def requeue(self, messages: Iterable[Any]) -> None:
        messages = list(messages)
        if messages:  # give back claims and slots before another worker can fetch them
            for listener in reversed(self.broker.fetch_listeners):
                listener.give_back(messages)
        try:
            super().requeue(messages)
        except TRANSIENT_ERRORS as exc:
            raise ConnectionClosed(exc) from None
        finally:
            # Put back, or left in the acks set for the next reclaim to put back.
            self.held.discard(self.queue_name, [m.options["redis_message_id"] for m in messages])

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if time.monotonic() >= self._reclaim_at:
                    self._reclaim()
                if self.ready:
                    self.misses = 0
                    return self.ready.pop(0)
                # Clear before fetching: a notification arriving from here on
                # ends the wait below instead of being lost. Mark saturation
                # before reading the count, so an ack racing with it wakes us.
                self.wakeup.clear()
                self._saturated = True
                room = self.prefetch - self.outstanding_message_count
                if room >= self.refill_at or (room > 0 and not self.queued_message_ids):
                    self._saturated = False
                    pairs = self.broker.fetch_pairs(self.queue_name, room)
                    self.ready = self._accept_all(pairs)
                    if self.ready:  # the ledger claims them while they wait
                        for listener in self.broker.fetch_listeners:
                            listener.take_ahead(self.ready)
                    if pairs:
                        continue
                self._wait_idle()
                return None
        except TRANSIENT_ERRORS as exc:
            raise ConnectionClosed(exc) from None

    def _accept_all(self, pairs: list[tuple[str, bytes | None]]) -> list[MessageProxy]:
        """The fetched messages to run; if accepting one fails, the batch is left to the reclaim."""
        accepted: list[MessageProxy] = []
        try:
            for redis_id, body in pairs:
                proxy = self._accept(redis_id, body)
                if proxy is not None:
                    accepted.append(proxy)
        except BaseException:
            # Nothing of the batch was handed on or taken ahead yet: forget it all here;
            # what is still in the acks set goes back at the next reclaim.
            for proxy in accepted:
                self.queued_message_ids.discard(proxy.message_id)
            self.held.discard(self.queue_name, [redis_id for redis_id, _ in pairs])
            raise
        return accepted

    def _reclaim(self) -> None:
        """Put back what this worker's acks set holds of the queue beyond this process."""
        reclaimed = self.held.reclaim(self.broker.namespace, self.broker.broker_id, self.queue_name)
        self._reclaim_at = time.monotonic() + self.broker.reclaim_interval_seconds
        if reclaimed:
            logger.warning(
                "Put %d message(s) of %s back: this worker's acks set held them, its "
                "consumers did not (a consumer restarted, a fetch's reply or a put-back was lost).",
                len(reclaimed),
                self.queue_name,
            )
            self.broker.wake([self.queue_name])

    def _wait_idle(self) -> None:
        """Wait for a wake-up (or the safety-net poll), or sleep the back-off without a listener."""
        if not self.broker.wakeups.listening:
            self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
            time.sleep(backoff_ms / 1000)
            return
        self.misses = 0
        # Each fetch refreshes this worker's heartbeat: poll well within its timeout.
        wait_ms = min(self.broker.wakeups.poll_ms, self.broker.heartbeat_timeout // 4)
        next_eta_ms = self._ms_until_next_eta()
        if next_eta_ms is not None:
            # A delay-queue consumer returns to its thread when the earliest
            # delayed message it holds is due, so the thread moves it on time.
            wait_ms = min(wait_ms, next_eta_ms)
        wait_ms = min(wait_ms, max(0, int((self._reclaim_at - time.monotonic()) * 1000)))
        if wait_ms > 0:
            self.waiting_for_wakeup = True
            try:
                self.wakeup.wait(wait_ms / 1000)
            finally:
                self.waiting_for_wakeup = False

    def _ms_until_next_eta(self) -> int | None:
        """Milliseconds until the earliest message held by this delay-queue consumer's thread."""
        if not self.queue_name.endswith(".DQ"):
            return None
        # Dramatiq's ConsumerThread keeps fetched delayed messages in a heap
        # ordered by eta, and moves the due ones only when this method returns.
        held = getattr(getattr(threading.current_thread(), "delay_queue", None), "queue", None)
        try:
            earliest = held[0].priority if held else None
        except (AttributeError, IndexError, TypeError):
            return None
        if earliest is None:
            return None
        return max(0, int(earliest) - int(time.time() * 1000))

    def _accept(self, redis_id: str, body: bytes | None) -> MessageProxy | None:
        """The message to run, or None after dealing with one that cannot run."""
        if body is None:
            # Its body is gone (purged or already acked elsewhere): forget the id.
            logger.warning(
                "Message %s of %s has no body; dropping its id.", redis_id, self.queue_name
            )
            self.broker.do_ack(self.queue_name, redis_id)
            self.held.discard(self.queue_name, [redis_id])
            return None
        try:
            message = Message.decode(body)
        except DecodeError as exc:
            self._dead_letter(redis_id, None, "MalformedMessage", f"not a Dramatiq message: {exc}")
            return None
        # The id it is stored under wins over whatever the body claims.
        message.options["redis_message_id"] = redis_id
        try:
            self.broker.get_actor(message.actor_name)
        except ActorNotFound:
            self._dead_letter(
                redis_id,
                message.message_id,
                "UnknownJobType",
                f"no job type {message.actor_name!r} is registered in this worker",
            )
            return None
        self.queued_message_ids.add(message.message_id)
        return MessageProxy(message)

    def _dead_letter(self, redis_id: str, job_id: str | None, error_type: str, reason: str) -> None:
        self.broker.do_nack(self.queue_name, redis_id)
        self.held.discard(self.queue_name, [redis_id])
        logger.error(
            "Dead-lettered message %s (job %s) of queue %s: %s. It stays in %s.XQ; "
            "the messages fetched with it run normally.",
            redis_id,
            job_id or "unknown",
            self.queue_name,
            reason,
            self.queue_name.removesuffix(".DQ"),
        )
        if job_id is not None and self.broker.on_dead_letter is not None:
            self.broker.on_dead_letter(job_id, error_type, reason)
