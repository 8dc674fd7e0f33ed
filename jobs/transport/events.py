"""Live job events over Redis pub/sub, for the SSE stream.

Status and progress live in the ledger (the stream reads them from there);
what the ledger does not hold (partial results, such as streamed lesson text)
is published here as it happens. A progress report also publishes a
:data:`CHANGED` notice, which tells the streams to read the ledger row now
rather than at their next poll; it is never shown to clients. Publishing is
fire-and-forget: a job never fails because nobody listens or Redis hiccups.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
import redis.asyncio

from jobs.conf import jobs_settings
from jobs.transport.broker import get_broker

logger = logging.getLogger(__name__)


def channel_name(job_id: str) -> str:
    """The pub/sub channel of one job's live events."""
    return f"{get_broker().namespace}:events:{job_id}"


def publish(job_id: str, event: str, data: dict[str, Any]) -> None:
    """Publish ``{"event": event, "data": data}`` on the job's channel."""
    try:
        get_broker().client.publish(
            channel_name(job_id), json.dumps({"event": event, "data": data})
        )
    except redis.RedisError as exc:
        logger.warning("Could not publish %s event of job %s: %s", event, job_id, exc)


#: The event of a notice that the job's ledger row changed (read it again; not forwarded).
CHANGED = "changed"


def publish_changed(job_id: str) -> None:
    """Tell the job's streams that its ledger row changed (after the change committed)."""
    publish(job_id, CHANGED, {})


def events_pubsub(job_id: str) -> Any:
    """A pub/sub connection subscribed to one job's channel (raises ``redis.RedisError``)."""
    pubsub = get_broker().client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_name(job_id))
    return pubsub


def async_events_client() -> redis.asyncio.Redis:
    """An asyncio Redis client for event streams (REDIS_URL; not Sentinel-aware yet)."""
    return redis.asyncio.Redis.from_url(jobs_settings.redis_url)
