"""The recovery loop's reads of the ledger: rows to re-send, workers holding attempts open."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db.models import F, Q

from jobs.models import FINISHED_STATUSES, Job, JobAttempt, JobOutbox, JobStatus

_WAITING = (JobStatus.QUEUED, JobStatus.RETRYING)


def jobs_unsent(*, created_before: datetime, limit: int) -> list[Job]:
    """Queued rows whose message never reached Redis (a crash or an outage at submission)."""
    return list(
        Job.objects.filter(
            status=JobStatus.QUEUED, enqueued_at__isnull=True, created_at__lt=created_before
        ).order_by("created_at")[:limit]
    )


def jobs_stranded_retrying(*, enqueued_before: datetime, limit: int) -> list[Job]:
    """Retrying rows whose retry was never sent (first) or should have been delivered long ago."""
    return list(
        Job.objects.filter(status=JobStatus.RETRYING)
        .filter(Q(enqueued_at__lt=enqueued_before) | Q(enqueued_at__isnull=True))
        .order_by(F("enqueued_at").asc(nulls_first=True))[:limit]
    )


def jobs_sent_before(*, before: datetime, limit: int) -> list[Job]:
    """Waiting rows last sent before ``before`` (their messages were lost with Redis's data)."""
    return list(
        Job.objects.filter(status__in=_WAITING)
        .filter(Q(enqueued_at__lt=before) | Q(enqueued_at__isnull=True, created_at__lt=before))
        .order_by("created_at")[:limit]
    )


def jobs_retrying_sent_before(*, before: datetime, limit: int) -> list[Job]:
    """Retrying rows whose retry was sent before ``before`` (lost with Redis's data)."""
    return list(
        Job.objects.filter(status=JobStatus.RETRYING, enqueued_at__lt=before).order_by(
            "enqueued_at"
        )[:limit]
    )


def attempts_open_since_before(*, started_before: datetime) -> bool:
    """Whether an attempt started before ``started_before`` is still open."""
    return JobAttempt.objects.filter(
        finished_at__isnull=True, started_at__lt=started_before
    ).exists()


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


def job_outboxes_due(*, created_before: datetime, limit: int) -> list[JobOutbox]:
    """Outbox rows older than ``created_before``: their send did not happen or not finish."""
    return list(JobOutbox.objects.filter(created_at__lt=created_before).order_by("pk")[:limit])


def job_outbox_waiting_jobs(*, outbox: JobOutbox) -> list[Job]:
    """The jobs of an outbox row that are still queued (the others have moved on)."""
    return list(
        Job.objects.filter(pk__in=list(outbox.job_ids), status=JobStatus.QUEUED).order_by(
            "created_at"
        )
    )


def open_attempt_workers_on_host(*, host: str, limit: int) -> list[str]:
    """Full worker ids (``host:pid:broker-id``) with attempts open on one host."""
    return list(
        JobAttempt.objects.filter(finished_at__isnull=True, worker_id__startswith=f"{host}:")
        .values_list("worker_id", flat=True)
        .distinct()
        .order_by("worker_id")[:limit]
    )


def organizations_with_waiting_jobs(*, limit: int) -> list[int]:
    """Organizations with jobs waiting to run (those a leaked running-job slot holds back)."""
    return list(
        Job.objects.filter(status__in=_WAITING, organization__isnull=False)
        .values_list("organization_id", flat=True)
        .distinct()
        .order_by("organization_id")[:limit]
    )


def jobs_finished_among(*, job_ids: Sequence[str]) -> list[str]:
    """The ids among ``job_ids`` of jobs that have finished."""
    if not job_ids:
        return []
    return [
        str(pk)
        for pk in Job.objects.filter(
            pk__in=list(job_ids), status__in=FINISHED_STATUSES
        ).values_list("pk", flat=True)
    ]
