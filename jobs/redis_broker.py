"""Dramatiq's RedisBroker, hardened: no message stays stuck in an acks set.

Dramatiq 2.2's Redis consumer loses track of messages in three ways, each
fixed here rather than in site-packages:

- A message that cannot be decoded raises out of the consumer, which drops
  every message prefetched with it; they stay in the worker's acks set until
  the worker dies. :class:`JobsRedisConsumer` fetches ``(redis id, body)``
  pairs, dead-letters an undecodable body or an unknown actor by its Redis
  id, logs it once, and hands its neighbours on.
- After a connection error the worker drops the delayed messages it held in
  memory while they stay in its ``.DQ`` acks set. A delay-queue consumer
  starting in a process puts back whatever that process still holds there.
- Requeueing a dead worker's messages happens on a random 0.1 % of commands
  (and uses ``KEYS``). The broker turns that off (``maintenance_chance=0``);
  ``jobs.recovery`` requeues dead workers' messages on a fixed interval with
  :meth:`JobsRedisBroker.requeue_worker`, naming every key it touches.

It also replaces polling by notifications (``jobs.wakeups``): every command
that puts messages on a list publishes the list's name in the same round
trip, and an idle consumer waits for that instead of sleeping a back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis
from dramatiq import Message, Middleware
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, dq_name
from dramatiq.errors import ActorNotFound, ConnectionClosed, DecodeError
from dramatiq.middleware import MiddlewareError
from redis.exceptions import NoScriptError

from jobs.acks import Acker, AckGate
from jobs.wakeups import QueueWakeups, publish_wakeups, wakeup_channel

logger = logging.getLogger(__name__)

#: Redis errors after which an operation is worth retrying once Redis is back.
TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError)

# Fetch like Dramatiq's ``fetch`` command, but return (id, found, body) triples so
# the consumer can ack or dead-letter a message whose body it cannot decode.
_FETCH = """
local ns, queue, worker, now, count = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call("zadd", ns .. ":__heartbeats__", now, worker)
local acks = ns .. ":__acks__." .. worker .. "." .. queue
local list = ns .. ":" .. queue
local bodies = list .. ".msgs"
local out = {}
for i = 1, count do
    local id = redis.call("lpop", list)
    if not id then break end
    redis.call("sadd", acks, id)
    local body = redis.call("hget", bodies, id)
    out[#out + 1] = id
    if body then
        out[#out + 1] = 1
        out[#out + 1] = body
    else
        out[#out + 1] = 0
        out[#out + 1] = ""
    end
end
return out
"""

# Put every message a worker holds (its acks sets) back at the tail of its queue.
# ARGV: worker id, forget (1: drop the worker's heartbeat), queue names...
# Returns the Dramatiq message ids (job ids) put back; bodies that are not JSON
# are put back too and reported as "?".
_REQUEUE_WORKER = """
local ns, worker, forget = KEYS[1], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV do
    local queue = ARGV[i]
    local acks = ns .. ":__acks__." .. worker .. "." .. queue
    local list = ns .. ":" .. queue
    local bodies = list .. ".msgs"
    local ids = redis.call("smembers", acks)
    for _, id in ipairs(ids) do
        local body = redis.call("hget", bodies, id)
        if body then
            redis.call("rpush", list, id)
            local ok, decoded = pcall(cjson.decode, body)
            if ok and type(decoded) == "table" and type(decoded["message_id"]) == "string" then
                out[#out + 1] = decoded["message_id"]
            else
                out[#out + 1] = "?"
            end
        end
    end
    if #ids > 0 then
        redis.call("del", acks)
    end
end
if forget == "1" then
    redis.call("zrem", ns .. ":__heartbeats__", worker)
end
return out
"""


class FetchListener(Protocol):
    """A middleware that takes fetched messages on before a job thread does.

    ``take_ahead`` runs on the consumer's thread with the messages it just
    fetched (the ledger claims them, fairness takes their slots); ``give_back``
    undoes that for messages put back on their queue unprocessed.
    """

    def take_ahead(self, messages: list[Any]) -> None: ...

    def give_back(self, messages: list[Any]) -> None: ...


def add_fetch_listener(broker: Any, listener: FetchListener) -> None:
    """Register ``listener`` on ``broker`` if it is ours (others have no fetch hooks)."""
    listeners = getattr(broker, "fetch_listeners", None)
    if listeners is not None and listener not in listeners:
        listeners.append(listener)


def remove_fetch_listener(broker: Any, listener: FetchListener) -> None:
    listeners = getattr(broker, "fetch_listeners", None)
    if listeners is not None and listener in listeners:
        listeners.remove(listener)


class JobsRedisBroker(RedisBroker):
    """A RedisBroker whose consumers never strand a message, and without random maintenance.

    Parameters: those of :class:`dramatiq.brokers.redis.RedisBroker`;
    ``maintenance_chance`` defaults to 0 because ``jobs.recovery`` does it.
    ``wakeups``: publish a notification with every message put on a list, and
    let idle consumers wait for one (``jobs.wakeups``) instead of polling;
    ``wakeup_poll_ms``: how often an idle consumer fetches anyway while
    notifications arrive, in milliseconds.
    """

    def __init__(
        self,
        *,
        maintenance_chance: int = 0,
        wakeups: bool = True,
        wakeup_poll_ms: int = 1_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(maintenance_chance=maintenance_chance, **kwargs)
        self.scripts["jobs_fetch"] = self.client.register_script(_FETCH)
        self.scripts["jobs_requeue_worker"] = self.client.register_script(_REQUEUE_WORKER)
        #: Sends this process's acks in batches (jobs.acks).
        self.acker = Acker(self)
        self.publishes_wakeups = wakeups
        self.wakeups = QueueWakeups(
            self.client, wakeup_channel(self.namespace, self.client), poll_ms=wakeup_poll_ms
        )
        self._wakeup_errors_logged = False
        #: Middleware that act on messages as soon as a consumer fetches them
        #: (:class:`FetchListener`), in middleware order; a worker registers them.
        self.fetch_listeners: list[FetchListener] = []
        #: {hook name: (the middleware list it was read from, the middleware defining it)}
        self._hook_cache: dict[str, tuple[list[Middleware], list[Middleware]]] = {}

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Dramatiq's ``emit_before``, calling only the middleware that define the hook.

        Dramatiq looks up and calls the hook of all 16 middleware for every
        signal, most of them ``Middleware``'s no-ops: four signals per
        message, about a tenth of a no-op job's CPU in the worker. The
        middleware that define a hook are read once and again whenever the
        middleware list changes; errors are handled exactly as Dramatiq does.
        A hook set on a middleware instance later, with the list unchanged,
        is not seen: add the middleware again instead.
        """
        name = "before_" + signal
        for middleware in self.middleware_defining(name):
            try:
                getattr(middleware, name)(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical(
                    "Unexpected failure in %s of %r.", name, middleware, exc_info=True
                )

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Dramatiq's ``emit_after`` (middleware in reverse order), like :meth:`emit_before`."""
        name = "after_" + signal
        for middleware in reversed(self.middleware_defining(name)):
            try:
                getattr(middleware, name)(self, *args, **kwargs)
            except Exception:
                self.logger.critical(
                    "Unexpected failure in %s of %r.", name, middleware, exc_info=True
                )

    def middleware_defining(self, name: str) -> list[Middleware]:
        """The middleware, in order, whose ``name`` hook is not ``Middleware``'s no-op."""
        cached = self._hook_cache.get(name)
        if cached is not None and cached[0] == self.middleware:
            return cached[1]
        base = getattr(Middleware, name, None)
        defining = [
            m
            for m in self.middleware
            if base is None
            or getattr(type(m), name, None) is not base
            or name in getattr(m, "__dict__", ())
        ]
        self._hook_cache[name] = (list(self.middleware), defining)
        return defining

    @property
    def consumer_class(self) -> type[JobsRedisConsumer]:
        return JobsRedisConsumer

    def dispatch_with_wakeups(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> list[Any]:
        """Run Dramatiq's ``dispatch`` script once per ``(command, queue, args)``, in one round trip.

        With wake-ups on, the same pipeline publishes each queue's name once,
        after its messages are in Redis, so a consumer woken by it finds them.
        A failed publish (say, an ACL without ``PUBLISH``) is logged and costs
        only latency: consumers still poll. Returns each script's result.
        """
        dispatch = self.scripts["dispatch"]
        max_unpack = self._max_unpack_size()
        pending = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        for attempt in range(2):
            with self.client.pipeline(transaction=False) as pipe:
                for index in pending:
                    command, queue_name, args = calls[index]
                    # EVALSHA directly: a pipeline running Script objects first asks
                    # SCRIPT EXISTS, which costs a round trip of its own.
                    pipe.evalsha(
                        dispatch.sha,
                        1,
                        self.namespace,
                        command,
                        int(time.time() * 1000),
                        queue_name,
                        self.broker_id,
                        self.heartbeat_timeout,
                        self.dead_message_ttl,
                        self._should_do_maintenance(command),
                        max_unpack,
                        *args,
                    )
                published = 0
                if self.publishes_wakeups:
                    published = publish_wakeups(
                        pipe, self.wakeups.channel, (calls[i][1] for i in pending)
                    )
                replies = pipe.execute(raise_on_error=False)
            missing = []
            for index, reply in zip(pending, replies[: len(pending)], strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[index] = reply
            self._check_publishes(replies[len(pending) : len(pending) + published])
            if not missing:
                break
            # Redis lost its scripts (restart, failover, SCRIPT FLUSH): nothing ran; load and retry.
            dispatch.sha = self.client.script_load(dispatch.script)
            pending = missing
        return results

    def wake(self, queue_names: Iterable[str]) -> None:
        """Notify consumers that messages reached ``queue_names`` (best effort)."""
        if not self.publishes_wakeups:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                if publish_wakeups(pipe, self.wakeups.channel, queue_names):
                    self._check_publishes(pipe.execute(raise_on_error=False))
        except redis.RedisError as exc:
            self._check_publishes([exc])

    def _check_publishes(self, replies: Sequence[Any]) -> None:
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors and not self._wakeup_errors_logged:
            self._wakeup_errors_logged = True
            logger.warning(
                "Could not publish queue wake-ups (%s); workers find new messages by polling "
                "every JOBS_WORKER_WAKEUP_POLL_MS. Grant the Redis user PUBLISH/SUBSCRIBE on "
                "%s, or set JOBS_WORKER_WAKEUPS=0. This is logged once.",
                errors[0],
                self.wakeups.channel,
            )

    def do_enqueue(self, queue_name: str, *args: Any) -> Any:
        return self.dispatch_with_wakeups([("enqueue", queue_name, args)])[0]

    def do_requeue(self, queue_name: str, *args: Any) -> Any:
        return self.dispatch_with_wakeups([("requeue", queue_name, args)])[0]

    def fetch_pairs(self, queue_name: str, count: int) -> list[tuple[str, bytes | None]]:
        """Pop up to ``count`` message ids of a queue into this worker's acks set, with bodies."""
        raw = self.scripts["jobs_fetch"](
            keys=[self.namespace],
            args=[queue_name, self.broker_id, int(time.time() * 1000), count],
        )
        pairs: list[tuple[str, bytes | None]] = []
        for i in range(0, len(raw), 3):
            redis_id = raw[i].decode() if isinstance(raw[i], bytes) else str(raw[i])
            pairs.append((redis_id, raw[i + 2] if int(raw[i + 1]) else None))
        return pairs

    def requeue_worker(
        self, worker_broker_id: str, queue_names: Iterable[str], *, forget: bool
    ) -> list[str]:
        """Move every message ``worker_broker_id`` holds in these queues back to them.

        Returns the job ids put back. With ``forget``, the worker's heartbeat
        is removed too, so it is not examined again.
        """
        queue_names = list(queue_names)
        raw = self.scripts["jobs_requeue_worker"](
            keys=[self.namespace],
            args=[worker_broker_id, "1" if forget else "0", *queue_names],
        )
        if raw:
            self.wake(queue_names)
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]

    def all_queue_names(self) -> list[str]:
        """Every declared queue and its delay queue."""
        names = sorted(self.get_declared_queues())
        return [*names, *(dq_name(name) for name in names)]


class JobsRedisConsumer(_RedisConsumer):
    """A Redis consumer that dead-letters what it cannot decode and keeps its neighbours.

    Redis connection errors and timeouts are raised as ``ConnectionClosed``
    from every operation, so Dramatiq's worker retries acks until Redis is
    back and restarts the consumer instead of losing the thread.

    Idle, it waits on its queue's wake-up event (``jobs.wakeups``) while the
    process's listener is subscribed, and polls with Dramatiq's back-off
    (up to ``timeout``) while it is not.
    """

    broker: JobsRedisBroker

    def __init__(self, broker: JobsRedisBroker, queue_name: str, prefetch: int, timeout: int):
        super().__init__(broker, queue_name, prefetch, timeout)
        #: Fetched and decoded, not yet handed to the worker (counted in queued_message_ids).
        self.ready: list[MessageProxy] = []
        self.wakeup = broker.wakeups.event(queue_name)
        # Set while prefetch is (nearly) full: an ack must then wake the consumer to fetch more.
        self._saturated = False
        #: Fetch only once this much room is free: a batch of messages per round trip
        #: instead of one fetch for every ack (a tenth of a no-op job's worker CPU).
        self.refill_at = max(1, prefetch // 4)
        #: True while idle and waiting for a wake-up (not while sleeping a back-off).
        self.waiting_for_wakeup = False
        # A new delay-queue consumer in a process that already had one (it was
        # restarted after an error) takes back what the old one held in memory.
        self._reclaim_pending = queue_name.endswith(".DQ")

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids)

    def ack(self, message: Any) -> None:
        # Batched and sent by the process's acker; see jobs.acks for why that is safe.
        self.queued_message_ids.discard(message.message_id)
        acker, queue_name = self.broker.acker, self.queue_name
        redis_id = message.options["redis_message_id"]
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

    def requeue(self, messages: Iterable[Any]) -> None:
        messages = list(messages)
        if messages:  # give back claims and slots before another worker can fetch them
            for listener in reversed(self.broker.fetch_listeners):
                listener.give_back(messages)
        try:
            super().requeue(messages)
        except TRANSIENT_ERRORS as exc:
            raise ConnectionClosed(exc) from None

    def __next__(self) -> MessageProxy | None:
        try:
            if self._reclaim_pending:
                self._reclaim_pending = False
                reclaimed = self.broker.requeue_worker(
                    self.broker.broker_id, [self.queue_name], forget=False
                )
                if reclaimed:
                    logger.warning(
                        "Put %d delayed message(s) of %s back after a consumer restart.",
                        len(reclaimed),
                        self.queue_name,
                    )
            while True:
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
                    self.ready = [
                        proxy
                        for redis_id, body in pairs
                        if (proxy := self._accept(redis_id, body)) is not None
                    ]
                    if self.ready:  # the ledger claims them while they wait
                        for listener in self.broker.fetch_listeners:
                            listener.take_ahead(self.ready)
                    if pairs:
                        continue
                self._wait_idle()
                return None
        except TRANSIENT_ERRORS as exc:
            raise ConnectionClosed(exc) from None

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
        logger.error(
            "Dead-lettered message %s (job %s) of queue %s: %s. It stays in %s.XQ; "
            "the messages fetched with it run normally.",
            redis_id,
            job_id or "unknown",
            self.queue_name,
            reason,
            self.queue_name.removesuffix(".DQ"),
        )
        if job_id is None:
            return
        from django.db import DatabaseError, connection

        from jobs.services.recovery import job_dead_letter

        try:
            job_dead_letter(job_id=job_id, error_type=error_type, error_message=reason)
        except DatabaseError:
            logger.warning("Could not record the dead letter of job %s in the ledger.", job_id)
        finally:
            # Consumer threads use the database only here; do not keep a connection open.
            connection.close()
