"""The broker every process sends through: Dramatiq's RedisBroker, hardened.

Dramatiq 2.2's Redis consumer loses track of messages in three ways, each
fixed here rather than in site-packages:

- A message that cannot be decoded raises out of the consumer, which drops
  every message prefetched with it; they stay in the worker's acks set until
  the worker dies. :class:`JobsRedisConsumer` fetches ``(redis id, body)``
  pairs, dead-letters an undecodable body or an unknown actor by its Redis
  id, logs it once, and hands its neighbours on (:mod:`jobs.transport.consumer`).
- After a connection error the worker drops the delayed messages it held in
  memory while they stay in its ``.DQ`` acks set; a fetch whose reply is lost
  leaves its messages in the acks set of a worker that never saw them. Each
  consumer puts back, at start and every few seconds, what its acks set holds
  beyond what the process holds (:mod:`jobs.transport.held`).
- Requeueing a dead worker's messages happens on a random 0.1 % of commands
  (and uses ``KEYS``). The broker turns that off (``maintenance_chance=0``);
  the recovery loop (``jobs.services.recovery``) requeues dead workers'
  messages on a fixed interval with :meth:`JobsRedisBroker.requeue_worker`,
  naming every key it touches.

It also replaces polling by notifications (:mod:`jobs.transport.wakeups`): every command
that puts messages on a list publishes the list's name in the same round
trip, and an idle consumer waits for that instead of sleeping a back-off.

:func:`get_broker` is the handle services and middleware send through; the
broker itself is built (with its middleware) by ``jobs.broker.setup()``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import dramatiq
import redis
from dramatiq import Middleware
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.middleware import MiddlewareError
from redis.exceptions import NoScriptError

from jobs.conf import jobs_settings
from jobs.errors import BrokerUnavailable
from jobs.outages import REDIS
from jobs.transport.acks import Acker
from jobs.transport.consumer import JobsRedisConsumer
from jobs.transport.held import RECLAIM_INTERVAL_SECONDS, HeldMessages
from jobs.transport.wakeups import QueueWakeups, publish_wakeups, wakeup_channel

logger = logging.getLogger(__name__)

#: Called with (job id, error type, reason) when a consumer dead-letters a
#: message that cannot run at all; the assembly records it in the ledger.
DeadLetterHook = Callable[[str, str, str], None]

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
        #: The Redis ids this process's consumers fetched and still hold (jobs.transport.held).
        self.held = HeldMessages(self.client)
        #: How often each consumer puts back what its acks set holds beyond ``held``.
        self.reclaim_interval_seconds = RECLAIM_INTERVAL_SECONDS
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
        #: Records a message a consumer dead-lettered before it could run (see DeadLetterHook).
        self.on_dead_letter: DeadLetterHook | None = None

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Dramatiq's ``emit_before``, calling only the middleware that define the hook.

        Dramatiq looks up and calls the hook of every middleware for every
        signal, most of them ``Middleware``'s no-ops, four signals per
        message (bench/HISTORY.md). The
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
        self.held.add(queue_name, (redis_id for redis_id, _ in pairs))
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


def get_broker() -> JobsRedisBroker:
    """The process's broker (``jobs.broker.setup()`` made it Dramatiq's global broker)."""
    broker = dramatiq.get_broker()
    assert isinstance(broker, JobsRedisBroker), "jobs.broker.setup() has not run"
    return broker


def broker_ping() -> None:
    """PING the broker's Redis; raises ``redis.RedisError`` when it does not answer."""
    get_broker().client.ping()


def ensure_broker_available() -> None:
    """Raise :class:`BrokerUnavailable` if Redis does not answer a PING.

    Submissions call this before writing anything, so a Redis outage refuses
    the submission (the API answers 503) instead of accepting a job that would
    wait for the recovery loop. If Redis fails after the check, the row is
    committed anyway and the outbox relay sends it.
    """
    try:
        get_broker().client.ping()
    except redis.RedisError as exc:
        REDIS.failed(exc)
        raise BrokerUnavailable(
            f"Redis (REDIS_URL) is unavailable ({type(exc).__name__}); nothing was created. "
            "Retry in a few seconds."
        ) from None
    REDIS.recovered()


def worker_id() -> str:
    """``host:pid:broker-id`` of this process, as recorded on attempts.

    ``host`` is ``JOBS_WORKER_HOST`` (the host name by default). Read at every
    call: the recovery loop and ``jobs inspect`` match the broker id against
    heartbeats, and a rebuilt broker (``setup()`` again) has a new one.
    """
    return f"{jobs_settings.worker_host}:{os.getpid()}:{get_broker().broker_id}"
