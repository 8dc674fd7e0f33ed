"""The Dramatiq message of a ledger row (retries, replays and the outbox relay send these)."""

from __future__ import annotations

import time
from typing import Any

from dramatiq import Message

from jobs.models import Job
from jobs.queues import redis_queue_name


def job_message(job: Job) -> Message[Any]:
    """Rebuild the Dramatiq message of a ledger row: same id, payload, queue band and retries."""
    options: dict[str, Any] = {"max_retries": job.max_retries}
    if job.organization_id is not None:
        options["organization_id"] = job.organization_id
    return Message(
        queue_name=redis_queue_name(job.queue, job.priority),
        actor_name=job.job_type,
        args=(),
        kwargs=dict(job.payload or {}),
        options=options,
        message_id=str(job.pk),
        message_timestamp=int(time.time() * 1000),
    )
