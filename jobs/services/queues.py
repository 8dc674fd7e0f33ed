"""Operator actions on whole queues: purge a queue's waiting messages and cancel their jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from jobs.errors import UnknownQueue
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.queues import CONSUMED_QUEUES, band_queue_names
from jobs.selectors.queues import queue_stats
from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.queues import band_take_waiting, message_id

logger = logging.getLogger(__name__)

#: Jobs cancelled per transaction.
BATCH_SIZE = 1_000


@dataclass
class QueuePurgeResult:
    """What a queue purge removed.

    Parameters:
      removed_messages: messages deleted from Redis (waiting and delayed).
      cancelled_jobs: ledger rows moved to ``cancelled`` (each with a ``purged`` event).
      without_row: deleted messages that had no ledger row, or whose job had already finished.
      in_flight: messages workers had already fetched; they were left to finish.
    """

    queue: str
    removed_messages: int = 0
    cancelled_jobs: int = 0
    without_row: int = 0
    in_flight: int = 0
    job_ids: list[str] = field(default_factory=list)


def queue_purge(
    *,
    queue: str,
    via: str = "system",
    progress: Callable[[int, int], None] | None = None,
    broker: JobsRedisBroker | None = None,
) -> QueuePurgeResult:
    """Delete a queue's waiting and delayed messages, and cancel their jobs in the ledger.

    Each Redis list is emptied atomically, so a message sent meanwhile is
    either purged and cancelled or left untouched, never lost silently.
    Messages already fetched by a worker are not touched: a purged job a
    worker still holds is skipped by the ledger when it comes up, because its
    row is cancelled.

    Raises:
      UnknownQueue: ``queue`` is not a queue workers consume.
    """
    if queue not in CONSUMED_QUEUES:
        raise UnknownQueue(f"Unknown queue {queue!r}. Choose from: {', '.join(CONSUMED_QUEUES)}.")
    broker = broker or get_broker()
    result = QueuePurgeResult(queue=queue)
    result.in_flight = next(s.in_flight for s in queue_stats(broker) if s.queue == queue)
    bodies: list[bytes] = []
    for band in band_queue_names(queue):
        bodies.extend(band_take_waiting(broker, band))
    result.removed_messages = len(bodies)
    job_ids = list(dict.fromkeys(i for i in (message_id(b) for b in bodies) if i))
    for start in range(0, len(job_ids), BATCH_SIZE):
        cancelled = _cancel_purged(job_ids[start : start + BATCH_SIZE], queue=queue, via=via)
        result.job_ids.extend(cancelled)
        if progress is not None:
            progress(min(start + BATCH_SIZE, len(job_ids)), len(job_ids))
    result.cancelled_jobs = len(result.job_ids)
    result.without_row = result.removed_messages - result.cancelled_jobs
    logger.warning(
        "Queue %s purged via %s: %d message(s) removed, %d job(s) cancelled.",
        queue,
        via,
        result.removed_messages,
        result.cancelled_jobs,
    )
    return result


def _cancel_purged(ids: list[str], *, queue: str, via: str) -> list[str]:
    now = timezone.now()
    with transaction.atomic():
        jobs = list(
            Job.objects.select_for_update()
            .filter(pk__in=ids, status__in=[JobStatus.QUEUED, JobStatus.RETRYING])
            .only("id", "organization_id")
        )
        Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
            status=JobStatus.CANCELLED, cancel_requested_at=now, finished_at=now
        )
        JobEvent.objects.bulk_create(
            [
                JobEvent(
                    job=job,
                    organization_id=job.organization_id,
                    kind=JobEventKind.PURGED,
                    via=via,
                    detail={"queue": queue},
                    created_at=now,
                )
                for job in jobs
            ]
        )
    return [str(j.pk) for j in jobs]
