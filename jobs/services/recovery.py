"""Ledger writes of the recovery loop: lost attempts, dead letters, and the outbox.

These are system operations across every organization (the recovery loop
has no tenant); each one is a conditional update, safe to run twice or from
two processes at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from dramatiq import Message

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services.submission import job_message
from jobs.services.transitions import POISON as POISON
from jobs.services.transitions import WORKER_LOST as WORKER_LOST

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


def jobs_mark_enqueued(*, job_ids: Sequence[str], at: datetime | None = None) -> int:
    """Record that the messages of these jobs reached Redis.

    Runs after every send, so it is one plain statement: building the ORM
    query cost more CPU than the rest of a single submission's database work.
    """
    if not job_ids:
        return 0
    at = at or timezone.now()
    if connection.vendor != "postgresql":  # SQLite (make run)
        return Job.objects.filter(pk__in=list(job_ids)).update(enqueued_at=at)
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET enqueued_at = %s WHERE id = ANY(%s::uuid[])",  # noqa: S608
            [at, list(job_ids)],
        )
        return int(cursor.rowcount)


def jobs_unsent(*, created_before: datetime, limit: int) -> list[Job]:
    """Queued rows whose message never reached Redis (a crash or an outage at submission)."""
    return list(
        Job.objects.filter(
            status=JobStatus.QUEUED, enqueued_at__isnull=True, created_at__lt=created_before
        ).order_by("created_at")[:limit]
    )


def jobs_stranded_retrying(*, enqueued_before: datetime, limit: int) -> list[Job]:
    """Retrying rows whose retry message should have been delivered long ago."""
    return list(
        Job.objects.filter(status=JobStatus.RETRYING)
        .filter(Q(enqueued_at__lt=enqueued_before) | Q(enqueued_at__isnull=True))
        .order_by("enqueued_at")[:limit]
    )


def jobs_sent_before(*, before: datetime, limit: int) -> list[Job]:
    """Waiting rows last sent before ``before`` (their messages were lost with Redis's data)."""
    return list(
        Job.objects.filter(status__in=_WAITING)
        .filter(Q(enqueued_at__lt=before) | Q(enqueued_at__isnull=True, created_at__lt=before))
        .order_by("created_at")[:limit]
    )


def open_attempt_workers(*, started_before: datetime, limit: int) -> list[str]:
    """Worker ids (``host:pid:broker-id``) holding attempts open since before a time."""
    return list(
        JobAttempt.objects.filter(finished_at__isnull=True, started_at__lt=started_before)
        .values_list("worker_id", flat=True)
        .distinct()
        .order_by("worker_id")[:limit]
    )


def open_attempt_workers_of(*, broker_ids: Sequence[str]) -> list[str]:
    """Full worker ids of the open attempts of these broker ids."""
    if not broker_ids:
        return []
    query = Q()
    for broker_id in broker_ids:
        query |= Q(worker_id__endswith=f":{broker_id}")
    return list(
        JobAttempt.objects.filter(query, finished_at__isnull=True)
        .values_list("worker_id", flat=True)
        .distinct()
    )


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
