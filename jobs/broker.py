"""Builds the broker with its middleware, and binds every job type to it.

This is the assembly, and only that: ``JobsConfig.ready()`` calls
:func:`setup` (nothing here runs at import time). The broker itself (Redis,
consumers, sends) is :mod:`jobs.transport`; each middleware is one module of
:mod:`jobs.middleware`; docs/architecture.md describes the chain below and a
test holds the two equal.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from jobs.conf import jobs_settings
from jobs.middleware.argument_validation import ArgumentValidation
from jobs.middleware.db_connections import DbConnections
from jobs.middleware.fairness import Fairness
from jobs.middleware.heartbeat import WorkerHeartbeat, heartbeat_interval_ms
from jobs.middleware.interrupted_jobs import InterruptedJobs
from jobs.middleware.ledger import Ledger
from jobs.middleware.metrics import JobMetrics
from jobs.middleware.recycling import WorkerRecycling
from jobs.middleware.retries import Retries
from jobs.middleware.soft_time_limit import SoftTimeLimit
from jobs.middleware.tenant_context import TenantContext
from jobs.middleware.wakeups import QueueWakeupListener
from jobs.queues import CONSUMED_QUEUES, all_redis_queue_names
from jobs.registry import all_job_types, autodiscover
from jobs.runtime import make_actor_fn
from jobs.services.recovery_ledger import job_dead_letter_from_consumer
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.client import build_redis_client


def build_middleware() -> list[dramatiq.Middleware]:
    """The worker's middleware, outermost first.

    DB connections → queue wake-ups → heartbeat → interrupted jobs → tenant
    context → argument validation → fairness → worker recycling → ledger →
    metrics → Dramatiq's limits and retries. Fairness sits outside the ledger so a deferred message
    never touches its row; a message with invalid arguments is dead-lettered
    before either. Dramatiq calls ``after_*`` hooks in reverse, so the ledger
    sees the decision Retries made (retry or dead-letter) before it records it.
    """
    return [
        DbConnections(),
        QueueWakeupListener(),
        WorkerHeartbeat(interval_ms=heartbeat_interval_ms()),
        InterruptedJobs(),
        TenantContext(),
        ArgumentValidation(),
        Fairness(),
        WorkerRecycling(
            max_jobs=jobs_settings.worker_max_jobs, max_rss_mb=jobs_settings.worker_max_rss_mb
        ),
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


def build_broker() -> JobsRedisBroker:
    """A :class:`JobsRedisBroker` on the configured Redis, with :func:`build_middleware`."""
    broker = JobsRedisBroker(
        client=build_redis_client(),
        namespace=jobs_settings.redis_namespace,
        heartbeat_timeout=jobs_settings.heartbeat_timeout_ms,
        dead_message_ttl=jobs_settings.dead_message_ttl_ms,
        wakeups=jobs_settings.worker_wakeups,
        wakeup_poll_ms=jobs_settings.worker_wakeup_poll_ms,
        middleware=build_middleware(),
    )
    broker.on_dead_letter = job_dead_letter_from_consumer
    for queue_name in all_redis_queue_names(CONSUMED_QUEUES):
        broker.declare_queue(queue_name)
    return broker


def setup() -> JobsRedisBroker:
    """Build the broker, make it Dramatiq's global broker, and bind every job type to it."""
    broker = build_broker()
    dramatiq.set_broker(broker)
    autodiscover()
    bind(broker)
    return broker


def bind(broker: dramatiq.Broker) -> None:
    """Create (or re-create) a Dramatiq actor on ``broker`` for every job type."""
    for jt in all_job_types():
        if jt.name in broker.actors:
            del broker.actors[jt.name]
        jt.actor = dramatiq.Actor(
            make_actor_fn(jt),
            broker=broker,
            actor_name=jt.name,
            queue_name=jt.queue,
            priority=0,
            options=jt.actor_options(),
        )
