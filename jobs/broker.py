"""Builds the Dramatiq broker and its middleware, and sends messages in bulk.

``JobsConfig.ready()`` calls :func:`setup`; nothing here runs at import time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
from django.utils import timezone
from dramatiq import Message
from dramatiq.common import dq_name
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from jobs.conf import jobs_settings
from jobs.errors import BrokerUnavailable
from jobs.ids import uuid4_texts
from jobs.queues import QUEUES, all_redis_queue_names
from jobs.redis_broker import JobsRedisBroker
from jobs.redis_client import connect_redis

logger = logging.getLogger(__name__)

#: Queues that workers consume. ``dead_letter`` is only browsed, never consumed.
CONSUMED_QUEUES = tuple(q for q in QUEUES if q != "dead_letter")


def build_broker() -> JobsRedisBroker:
    """A RedisBroker with our middleware, outermost first.

    DB connections → heartbeat → interrupted jobs → tenant context → argument
    validation → fairness → ledger → Dramatiq's limits and retries. Fairness
    sits outside the ledger so a deferred message never touches its row; a
    message with invalid arguments is dead-lettered before either.
    Dramatiq calls ``after_*`` hooks in reverse, so the ledger sees the
    decision Retries made (retry or dead-letter) before it records it.
    """
    from jobs.middleware.argument_validation import ArgumentValidation
    from jobs.middleware.db_connections import DbConnections
    from jobs.middleware.fairness import Fairness
    from jobs.middleware.heartbeat import WorkerHeartbeat, heartbeat_interval_ms
    from jobs.middleware.interrupted_jobs import InterruptedJobs
    from jobs.middleware.ledger import Ledger
    from jobs.middleware.metrics import JobMetrics
    from jobs.middleware.soft_time_limit import SoftTimeLimit
    from jobs.middleware.tenant_context import TenantContext
    from jobs.middleware.wakeups import QueueWakeupListener

    middleware = [
        DbConnections(),
        QueueWakeupListener(),
        WorkerHeartbeat(interval_ms=heartbeat_interval_ms()),
        InterruptedJobs(),
        TenantContext(),
        ArgumentValidation(),
        Fairness(),
        Ledger(),
        JobMetrics(),
        AgeLimit(max_age=jobs_settings.default_max_age_ms),
        TimeLimit(time_limit=jobs_settings.default_time_limit_ms, interval=100),
        SoftTimeLimit(soft_time_limit=jobs_settings.default_soft_time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=jobs_settings.default_max_retries,
            min_backoff=jobs_settings.default_min_backoff_ms,
            max_backoff=jobs_settings.default_max_backoff_ms,
        ),
    ]
    broker = JobsRedisBroker(
        client=build_redis_client(),
        namespace=jobs_settings.redis_namespace,
        heartbeat_timeout=jobs_settings.heartbeat_timeout_ms,
        dead_message_ttl=jobs_settings.dead_message_ttl_ms,
        wakeups=jobs_settings.worker_wakeups,
        wakeup_poll_ms=jobs_settings.worker_wakeup_poll_ms,
        middleware=middleware,
    )
    for queue_name in all_redis_queue_names(CONSUMED_QUEUES):
        broker.declare_queue(queue_name)
    return broker


def build_redis_client() -> redis.Redis:
    """The broker's Redis client: REDIS_URL (password, TLS) or the master Redis Sentinel names.

    Every other Redis user in the code takes ``get_broker().client``, so this
    is the one place connections are configured.
    """
    return connect_redis(
        url=jobs_settings.redis_url,
        tls_ca_file=jobs_settings.redis_tls_ca_file,
        tls_cert_file=jobs_settings.redis_tls_cert_file,
        tls_key_file=jobs_settings.redis_tls_key_file,
        sentinels=jobs_settings.redis_sentinels,
        sentinel_master=jobs_settings.redis_sentinel_master,
        sentinel_username=jobs_settings.redis_sentinel_username,
        sentinel_password=jobs_settings.redis_sentinel_password,
    )


def setup() -> JobsRedisBroker:
    """Build the broker, make it Dramatiq's global broker, and bind every job type to it."""
    from jobs import registry

    broker = build_broker()
    dramatiq.set_broker(broker)
    registry.autodiscover()
    registry.bind(broker)
    return broker


def get_broker() -> JobsRedisBroker:
    broker = dramatiq.get_broker()
    assert isinstance(broker, JobsRedisBroker), "jobs.broker.setup() has not run"
    return broker


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
        raise BrokerUnavailable(
            f"Redis (REDIS_URL) is unavailable ({type(exc).__name__}); nothing was created. "
            "Retry in a few seconds."
        ) from None


_hostname = socket.gethostname()


def worker_id() -> str:
    """``host:pid:broker-id`` of this process, as recorded on attempts.

    Read at every call: the recovery loop and ``jobs inspect`` match the broker
    id against heartbeats, and a rebuilt broker (``setup()`` again) has a new one.
    """
    return f"{_hostname}:{os.getpid()}:{get_broker().broker_id}"


def enqueue_messages(
    items: Sequence[tuple[Message[Any], int | None]], *, mark_enqueued: bool = True
) -> bool:
    """Send messages to Redis in one pipeline (with their queues' wake-ups).

    Returns whether Redis took them. A Redis failure is logged, not raised:
    the ledger rows are committed, and the recovery loop re-sends queued rows
    that never reached Redis. After a successful send the rows' ``enqueued_at``
    is set, which tells the outbox relay to leave them alone;
    ``mark_enqueued=False`` leaves that to the caller (submissions delete
    their :class:`~jobs.models.JobOutbox` row instead).
    """
    if not items:
        return True
    broker = get_broker()
    try:
        # One message too: RedisBroker.enqueue() sends the same commands, after
        # calling every middleware's no-op hooks and copying the message twice.
        _enqueue_pipelined(broker, items)
    except redis.RedisError as exc:
        logger.warning(
            "Could not send %d message(s) to Redis (%s: %s); their jobs stay queued "
            "and the recovery loop will send them. First job: %s",
            len(items),
            type(exc).__name__,
            exc,
            items[0][0].message_id,
        )
        return False
    if mark_enqueued:
        _mark_enqueued([message.message_id for message, _ in items])
    return True


def _mark_enqueued(job_ids: list[str]) -> None:
    from django.db import DatabaseError

    from jobs.services.recovery import jobs_mark_enqueued

    try:
        jobs_mark_enqueued(job_ids=job_ids, at=timezone.now())
    except DatabaseError:
        # The messages are in Redis; at worst the relay sends a duplicate, which the ledger skips.
        logger.warning("Could not record that %d message(s) reached Redis.", len(job_ids))


def _enqueue_pipelined(
    broker: JobsRedisBroker, items: Sequence[tuple[Message[Any], int | None]]
) -> None:
    # Mirrors RedisBroker.enqueue, but sends every dispatch (and the queues'
    # wake-ups) in one round trip. The enqueue hooks run only for middleware that
    # defines them: calling the base class's no-ops of 15 middleware for each
    # message was a tenth of a bulk send.
    before = _hooks(broker, "before_enqueue")
    after = _hooks(broker, "after_enqueue")
    encode = _message_encoder()
    redis_ids = uuid4_texts(len(items))
    calls: list[tuple[str, str, Sequence[Any]]] = []
    sent: list[tuple[Message[Any], int | None]] = []
    now_ms = int(time.time() * 1000)
    for (message, delay), redis_id in zip(items, redis_ids, strict=True):
        queue_name = message.queue_name
        options = {**message.options, "redis_message_id": redis_id}
        if delay is not None:
            queue_name = dq_name(queue_name)
            options["eta"] = now_ms + delay
        if encode is None or before or after:
            # Message.copy() is dataclasses.replace(), which inspects the fields on every call.
            message = Message(
                queue_name,
                message.actor_name,
                message.args,
                message.kwargs,
                options,
                message.message_id,
                message.message_timestamp,
            )
            for hook in before:
                hook(broker, message, delay)
            body = message.encode() if encode is None else encode(message.asdict())
            if after:
                sent.append((message, delay))
        else:
            # Nothing sees the sent message: encode its fields without building it.
            body = encode(
                {
                    "queue_name": queue_name,
                    "actor_name": message.actor_name,
                    "args": message.args,
                    "kwargs": message.kwargs,
                    "options": options,
                    "message_id": message.message_id,
                    "message_timestamp": message.message_timestamp,
                }
            )
        calls.append(("enqueue", queue_name, (redis_id, body)))
    broker.dispatch_with_wakeups(calls)
    for message, delay in sent:
        for hook in after:
            hook(broker, message, delay)


_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _message_encoder() -> Callable[[dict[str, Any]], bytes] | None:
    """Encodes a message's fields as ``Message.encode`` would; None: use ``Message.encode``.

    Dramatiq's ``JSONEncoder.encode`` is ``json.dumps(message.asdict())``,
    which builds a new ``json.JSONEncoder`` per message; the same bytes come
    from one encoder built once. Any other encoder is used as configured.
    """
    if type(dramatiq.get_encoder()) is not dramatiq.JSONEncoder:
        return None
    return _encode_fields


def _encode_fields(fields: dict[str, Any]) -> bytes:
    return _compact_json(fields).encode()


def _hooks(broker: JobsRedisBroker, name: str) -> list[Any]:
    """The bound ``name`` hooks of the broker's middleware that override Middleware's no-op."""
    return [getattr(m, name) for m in broker.middleware_defining(name)]
