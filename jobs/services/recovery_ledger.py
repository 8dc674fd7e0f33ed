"""Ledger writes of the recovery loop: lost attempts, dead letters, sends recorded.

These are system operations across every organization (the recovery loop
has no tenant); each one is a conditional update, safe to run twice or from
two processes at once. The loop itself is :mod:`jobs.services.recovery`, its
queries :mod:`jobs.selectors.recovery`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Count
from django.utils import timezone
from dramatiq import Message

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services.messages import job_message
from jobs.services.transitions import POISON as POISON
from jobs.services.transitions import WORKER_LOST as WORKER_LOST

logger = logging.getLogger(__name__)

#: ``error_type`` of an attempt cut short by a worker shutdown (does not count as poison).
WORKER_SHUTDOWN = "WorkerShutdown"

_WAITING = (JobStatus.QUEUED, JobStatus.RETRYING)


@dataclass(frozen=True)
class LostAttempts:
    """What marking a worker's open attempts as lost did.

    Parameters:
      rerun: jobs moved from running to retrying; each needs a message in Redis.
      cancelled: jobs whose cancel was pending; now cancelled instead.
    """

    rerun: list[str]
    cancelled: list[str]


def job_attempts_mark_lost(
    *, worker_ids: Sequence[str], error_type: str, error_message: str
) -> LostAttempts:
    """Close the open attempts of dead (or stopping) worker processes as ``lost``.

    The job of each such attempt moves from ``running`` to ``retrying`` (or to
    ``cancelled`` when a cancel was pending), so the next delivery of its
    message claims it. ``worker_ids`` are full ``host:pid:broker-id`` values.
    """
    if not worker_ids:
        return LostAttempts(rerun=[], cancelled=[])
    now = timezone.now()
    rerun: list[str] = []
    cancelled: list[str] = []
    with transaction.atomic():
        attempts = list(
            JobAttempt.objects.select_for_update(skip_locked=True)
            .filter(finished_at__isnull=True, worker_id__in=list(worker_ids))
            .values_list("pk", "job_id", "number")
        )
        if not attempts:
            return LostAttempts(rerun=[], cancelled=[])
        JobAttempt.objects.filter(pk__in=[pk for pk, _, _ in attempts]).update(
            outcome=AttemptOutcome.LOST,
            finished_at=now,
            error_type=error_type,
            error_message=error_message[:2000],
        )
        for _pk, job_id, number in attempts:
            current = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=number)
            if current.filter(cancel_requested_at__isnull=False).update(
                status=JobStatus.CANCELLED, finished_at=now
            ):
                cancelled.append(str(job_id))
            elif current.update(status=JobStatus.RETRYING, enqueued_at=now):
                rerun.append(str(job_id))
    return LostAttempts(rerun=rerun, cancelled=cancelled)


def job_dead_letter(*, job_id: str, error_type: str, error_message: str) -> bool:
    """Fail a waiting job whose message was dead-lettered before it could run.

    Used for messages that cannot run at all (unknown job type, invalid
    arguments). Returns whether the row changed.
    """
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, status__in=_WAITING).update(
            status=JobStatus.FAILED,
            error_type=error_type[:200],
            error_message=error_message,
            finished_at=now,
            dead_lettered_at=now,
        )
    )


def job_dead_letter_from_consumer(job_id: str, error_type: str, reason: str) -> None:
    """:func:`job_dead_letter` for a Redis consumer thread (``JobsRedisBroker.on_dead_letter``).

    A database error is logged, not raised: the message is already in the
    dead-letter set. The connection is closed after, because consumer threads
    use the database only here.
    """
    try:
        job_dead_letter(job_id=job_id, error_type=error_type, error_message=reason)
    except DatabaseError:
        logger.warning("Could not record the dead letter of job %s in the ledger.", job_id)
    finally:
        connection.close()


def jobs_mark_enqueued(*, job_ids: Sequence[str], at: datetime | None = None) -> int:
    """Record that the messages of these jobs reached Redis.

    Runs after every send, so it is one plain statement: building the ORM
    query cost more CPU than the rest of a single submission's database work.
    """
    if not job_ids:
        return 0
    at = at or timezone.now()
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET enqueued_at = %s WHERE id = ANY(%s::uuid[])",  # noqa: S608
            [at, list(job_ids)],
        )
        return int(cursor.rowcount)


def relay_messages(jobs: Sequence[Job]) -> list[tuple[Message[Any], int | None]]:
    """Rebuild the messages of ledger rows to send again, with their remaining delay.

    A retried job keeps the count of its failed attempts, so re-sending it
    does not hand it a fresh retry budget.
    """
    failures: dict[str, int] = {}
    retrying = [job.pk for job in jobs if job.status == JobStatus.RETRYING]
    if retrying:
        failures = {
            str(row["job_id"]): row["n"]
            for row in JobAttempt.objects.filter(
                job_id__in=retrying,
                outcome__in=[AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT],
            )
            .values("job_id")
            .annotate(n=Count("pk"))
        }
    now = timezone.now()
    items: list[tuple[Message[Any], int | None]] = []
    for job in jobs:
        message = job_message(job)
        if failures.get(str(job.pk)):
            message.options["retries"] = failures[str(job.pk)]
        delay_ms = None
        if job.status == JobStatus.QUEUED and job.scheduled_for and job.scheduled_for > now:
            delay_ms = int((job.scheduled_for - now).total_seconds() * 1000)
        items.append((message, delay_ms))
    return items
