"""Builds the Dramatiq broker and its middleware, and sends messages in bulk.

``JobsConfig.ready()`` calls :func:`setup`; nothing here runs at import time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
import redis
from django_dramatiq.middleware import DbConnectionsMiddleware
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
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
from jobs.queues import QUEUES, all_redis_queue_names
from jobs.redis_client import connect_redis

logger = logging.getLogger(__name__)

#: Queues that workers consume. ``dead_letter`` is only browsed, never consumed.
CONSUMED_QUEUES = tuple(q for q in QUEUES if q != "dead_letter")


def build_broker() -> RedisBroker:
    """A RedisBroker with our middleware, outermost first.

    DB connections → heartbeat → tenant context → fairness → ledger → Dramatiq's
    limits and retries. Fairness sits outside the ledger so a deferred message
    never touches its row.
    Dramatiq calls ``after_*`` hooks in reverse, so the ledger sees the
    decision Retries made (retry or dead-letter) before it records it.
    """
    from jobs.middleware.fairness import Fairness
    from jobs.middleware.heartbeat import WorkerHeartbeat, heartbeat_interval_ms
    from jobs.middleware.ledger import Ledger
    from jobs.middleware.metrics import JobMetrics
    from jobs.middleware.soft_time_limit import SoftTimeLimit
    from jobs.middleware.tenant_context import TenantContext

    middleware = [
        DbConnectionsMiddleware(),
        WorkerHeartbeat(interval_ms=heartbeat_interval_ms()),
        TenantContext(),
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
    broker = RedisBroker(
        client=build_redis_client(),
        namespace=jobs_settings.redis_namespace,
        heartbeat_timeout=jobs_settings.heartbeat_timeout_ms,
        dead_message_ttl=jobs_settings.dead_message_ttl_ms,
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


def setup() -> RedisBroker:
    """Build the broker, make it Dramatiq's global broker, and bind every job type to it."""
    from jobs import registry

    broker = build_broker()
    dramatiq.set_broker(broker)
    registry.autodiscover()
    registry.bind(broker)
    return broker


def get_broker() -> RedisBroker:
    broker = dramatiq.get_broker()
    assert isinstance(broker, RedisBroker), "jobs.broker.setup() has not run"
    return broker


_worker_ids: dict[int, str] = {}


def worker_id() -> str:
    """``host:pid:broker-id`` of this process, as recorded on attempts."""
    pid = os.getpid()
    value = _worker_ids.get(pid)
    if value is None:
        value = f"{socket.gethostname()}:{pid}:{get_broker().broker_id}"
        _worker_ids[pid] = value
    return value


def enqueue_messages(items: Sequence[tuple[Message[Any], int | None]]) -> None:
    """Send messages to Redis: one command for one message, one pipeline for many.

    A Redis failure is logged, not raised: the ledger rows are committed, and
    the recovery loop re-sends queued rows that never reached Redis.
    """
    if not items:
        return
    broker = get_broker()
    try:
        if len(items) == 1:
            message, delay = items[0]
            broker.enqueue(message, delay=delay)
            return
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


def _enqueue_pipelined(
    broker: RedisBroker, items: Sequence[tuple[Message[Any], int | None]]
) -> None:
    # Mirrors RedisBroker.enqueue, but sends every dispatch in one round trip.
    dispatch = broker.scripts["dispatch"]
    max_unpack = broker._max_unpack_size()
    sent: list[tuple[Message[Any], int | None]] = []
    with broker.client.pipeline(transaction=False) as pipe:
        for message, delay in items:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            queue_name = message.queue_name
            if delay is not None:
                queue_name = dq_name(queue_name)
                message = message.copy(
                    queue_name=queue_name, options={"eta": int(time.time() * 1000) + delay}
                )
            broker.emit_before("enqueue", message, delay)
            dispatch(
                keys=[broker.namespace],
                args=[
                    "enqueue",
                    int(time.time() * 1000),
                    queue_name,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,
                    max_unpack,
                    message.options["redis_message_id"],
                    message.encode(),
                ],
                client=pipe,
            )
            sent.append((message, delay))
        pipe.execute()
    for message, delay in sent:
        broker.emit_after("enqueue", message, delay)
