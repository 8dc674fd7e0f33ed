"""Sending ledger rows' messages to Redis, and recording that they got there."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from django.db import DatabaseError
from django.utils import timezone

from jobs.services.recovery_ledger import jobs_mark_enqueued
from jobs.transport.send import Outgoing, send_messages

logger = logging.getLogger(__name__)


def jobs_send(items: Sequence[Outgoing], *, mark_enqueued: bool = True) -> bool:
    """Send messages to Redis in one pipeline; returns whether Redis took them.

    A Redis failure is logged, not raised: the ledger rows are committed, and
    the recovery loop re-sends queued rows that never reached Redis. After a
    successful send the rows' ``enqueued_at`` is set, which tells the outbox
    relay to leave them alone; ``mark_enqueued=False`` leaves that to the
    caller (submissions delete their :class:`~jobs.models.JobOutbox` row instead).
    """
    if not items:
        return True
    try:
        send_messages(items)
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
        job_ids = [message.message_id for message, _ in items]
        try:
            jobs_mark_enqueued(job_ids=job_ids, at=timezone.now())
        except DatabaseError:
            # The messages are in Redis; at worst the relay sends a duplicate, which the ledger skips.
            logger.warning("Could not record that %d message(s) reached Redis.", len(job_ids))
    return True
