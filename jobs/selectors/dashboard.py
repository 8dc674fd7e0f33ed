"""Reads behind the admin dashboard: throughput, failure rate, backlog, latest failures.

Every function takes ``organizations`` (``None`` = every job, system jobs
included). Queue depths and workers come from :mod:`jobs.selectors.queues`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from tenants.models import Organization


def scoped_jobs(*, organizations: QuerySet[Organization] | None) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if organizations is not None:
        jobs = jobs.filter(organization__in=organizations)
    return jobs


@dataclass(frozen=True)
class MinuteCount:
    """Jobs that finished in one bucket of time (a minute or an hour, starting at
    ``minute``): all of them, and the failed ones."""

    minute: datetime
    finished: int
    failed: int

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None


#: Bucket sizes a throughput series can have, and how Postgres truncates to them.
_TRUNCATE = {timedelta(minutes=1): TruncMinute, timedelta(hours=1): TruncHour}


def throughput(
    *,
    organizations: QuerySet[Organization] | None,
    span: timedelta,
    bucket: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
) -> list[MinuteCount]:
    """One entry per ``bucket`` (a minute or an hour) of the last ``span``, oldest first,
    zeros included; each entry's ``minute`` is the start of its bucket (UTC).

    "Finished" counts succeeded and failed jobs (cancelled ones are left out).
    Reads only the ``jobs_finished_status`` index (an index-only scan).
    """
    truncate = _TRUNCATE[bucket]
    current = (now or timezone.now()).astimezone(UTC).replace(second=0, microsecond=0)
    if bucket == timedelta(hours=1):
        current = current.replace(minute=0)
    end = current + bucket
    start = end - span
    rows = (
        scoped_jobs(organizations=organizations)
        .filter(
            finished_at__gte=start,
            finished_at__lt=end,
            status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED),
        )
        .annotate(bucket=truncate("finished_at", tzinfo=UTC))
        .values("bucket")
        # Counts of columns the index holds (not of ``id``): Postgres answers from the
        # index alone (an index-only scan) instead of fetching each finished job's row.
        .annotate(finished=Count("*"), failed=Count("status", filter=Q(status=JobStatus.FAILED)))
        .order_by()
    )
    found = {row["bucket"]: row for row in rows}
    series = []
    for i in range(int(span / bucket)):
        minute = start + i * bucket
        row = found.get(minute)
        series.append(
            MinuteCount(
                minute=minute,
                finished=row["finished"] if row else 0,
                failed=row["failed"] if row else 0,
            )
        )
    return series


def throughput_per_minute(
    *,
    organizations: QuerySet[Organization] | None,
    hours: int = 24,
    now: datetime | None = None,
) -> list[MinuteCount]:
    """One entry per minute of the last ``hours`` hours (see :func:`throughput`)."""
    return throughput(organizations=organizations, span=timedelta(hours=hours), now=now)


@dataclass(frozen=True)
class Backlog:
    """Unfinished jobs of one organization (``organization`` None: system jobs)."""

    organization: str | None
    queued: int
    running: int
    retrying: int

    @property
    def total(self) -> int:
        return self.queued + self.running + self.retrying


def backlog_per_organization(*, organizations: QuerySet[Organization] | None) -> list[Backlog]:
    """Queued, running and retrying jobs per organization, biggest backlog first."""
    rows = (
        scoped_jobs(organizations=organizations)
        .filter(status__in=ACTIVE_STATUSES)
        .values("organization__slug")
        .annotate(
            queued=Count("id", filter=Q(status=JobStatus.QUEUED)),
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
            retrying=Count("id", filter=Q(status=JobStatus.RETRYING)),
        )
        .order_by()
    )
    backlog = [
        Backlog(
            organization=row["organization__slug"],
            queued=row["queued"],
            running=row["running"],
            retrying=row["retrying"],
        )
        for row in rows
    ]
    return sorted(backlog, key=lambda b: (-b.total, b.organization or ""))


def recent_failures(*, organizations: QuerySet[Organization] | None, limit: int = 10) -> list[Job]:
    """The latest failed jobs (uses the ``jobs_status_created`` index)."""
    return list(
        scoped_jobs(organizations=organizations)
        .filter(status=JobStatus.FAILED)
        .select_related("organization")
        .order_by("-created_at")[:limit]
    )
