"""What operators inspect (``manage.py jobs``, the API's queue view): status, active jobs, stats.

Reads of the broker come from :mod:`jobs.selectors.queues`; reads of the
ledger are here. ``organization=None`` means every organization: these
functions serve operators, not tenants.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from jobs.models import Job, JobAttempt, JobStatus
from jobs.selectors.queues import QueueStats, WorkerInfo, queue_stats, workers
from jobs.transport.broker import JobsRedisBroker
from tenants.models import Organization

# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStatus:
    """A queue's live depths (from Redis) and its dead letters (from the ledger)."""

    stats: QueueStats
    dead_letters: int


@dataclass(frozen=True)
class SystemStatus:
    workers: list[WorkerInfo]
    queues: list[QueueStatus]


def system_status(*, broker: JobsRedisBroker | None = None) -> SystemStatus:
    """Workers alive, and every queue with its depths and dead-letter count."""
    stats = queue_stats(broker)
    dead = dict(
        Job.objects.filter(status=JobStatus.FAILED, dead_lettered_at__isnull=False)
        .values_list("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    return SystemStatus(
        workers=workers(broker),
        queues=[QueueStatus(stats=s, dead_letters=int(dead.get(s.queue, 0))) for s in stats],
    )


def workers_on_host(
    *, host: str | None = None, broker: JobsRedisBroker | None = None
) -> list[WorkerInfo]:
    """Worker processes on ``host`` (this machine by default) whose heartbeat is fresh."""
    host = host or socket.gethostname()
    return [w for w in workers(broker) if w.host == host]


# --- inspect ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveJob:
    """A queued, retrying or running job; running ones name their worker.

    Parameters:
      runtime_seconds: for a running job, since its current attempt started; else since creation.
      worker_alive: whether the worker of the running attempt still heartbeats.
    """

    id: str
    job_type: str
    organization: str | None
    status: str
    attempt: int
    progress: int
    worker_id: str | None
    worker_alive: bool | None
    runtime_seconds: float


def active_jobs(
    *,
    organization: Organization | None = None,
    running_only: bool = False,
    limit: int = 50,
    broker: JobsRedisBroker | None = None,
) -> list[ActiveJob]:
    """Running jobs first (longest-running first), then retrying and queued ones (oldest first)."""
    statuses = (
        [JobStatus.RUNNING]
        if running_only
        else [JobStatus.RUNNING, JobStatus.RETRYING, JobStatus.QUEUED]
    )
    now = timezone.now()
    found: list[Job] = []
    for status in statuses:
        qs = Job.objects.filter(status=status).select_related("organization")
        if organization is not None:
            qs = qs.filter(organization=organization)
        found.extend(
            qs.order_by("started_at" if status == JobStatus.RUNNING else "created_at")[
                : max(0, limit - len(found))
            ]
        )
    open_attempts = {
        a.job_id: a
        for a in JobAttempt.objects.filter(
            job_id__in=[j.pk for j in found if j.status == JobStatus.RUNNING],
            finished_at__isnull=True,
        )
    }
    alive = {w.broker_id for w in workers(broker)} if open_attempts else set()
    rows = []
    for job in found:
        attempt = open_attempts.get(job.pk)
        since: datetime = attempt.started_at if attempt else job.created_at
        rows.append(
            ActiveJob(
                id=str(job.pk),
                job_type=job.job_type,
                organization=job.organization.slug if job.organization else None,
                status=job.status,
                attempt=job.attempts,
                progress=job.progress,
                worker_id=attempt.worker_id if attempt else None,
                worker_alive=(attempt.worker_id.rsplit(":", 1)[-1] in alive) if attempt else None,
                runtime_seconds=max(0.0, (now - since).total_seconds()),
            )
        )
    return rows


# --- stats -----------------------------------------------------------------------------------


@dataclass
class TypeStats:
    """One job type over one window.

    Parameters:
      failure_rate: failed / (succeeded + failed), None when nothing finished.
      throughput_per_minute: finished jobs per minute over the window.
      avg_duration_seconds: mean of started → finished over finished jobs.
    """

    job_type: str
    window: str
    submitted: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried_attempts: int = 0
    failure_rate: float | None = None
    throughput_per_minute: float = 0.0
    avg_duration_seconds: float | None = None


WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}


def job_type_stats(*, organization: Organization | None = None) -> list[TypeStats]:
    """Throughput and failure rate per job type over the last hour and the last 24 hours."""
    now = timezone.now()
    rows: list[TypeStats] = []
    for name, window in WINDOWS.items():
        since = now - window
        jobs = Job.objects.all()
        attempts = JobAttempt.objects.all()
        if organization is not None:
            jobs = jobs.filter(organization=organization)
            attempts = attempts.filter(job__organization=organization)
        by_type: dict[str, TypeStats] = {}
        row = _row_maker(by_type, name)

        for r in jobs.filter(created_at__gte=since).values("job_type").annotate(n=Count("id")):
            row(r["job_type"]).submitted = r["n"]
        finished = (
            jobs.filter(finished_at__gte=since)
            .values("job_type")
            .annotate(
                n=Count("id"),
                ok=Count("id", filter=Q(status=JobStatus.SUCCEEDED)),
                failed=Count("id", filter=Q(status=JobStatus.FAILED)),
                cancelled=Count("id", filter=Q(status=JobStatus.CANCELLED)),
            )
        )
        for r in finished:
            s = row(r["job_type"])
            s.finished, s.succeeded, s.failed, s.cancelled = (
                r["n"],
                r["ok"],
                r["failed"],
                r["cancelled"],
            )
        durations = (
            jobs.filter(finished_at__gte=since, started_at__isnull=False)
            .values_list("job_type", "started_at", "finished_at")
            .order_by()
        )
        totals: dict[str, tuple[float, int]] = {}
        for job_type, started, ended in durations.iterator(chunk_size=2_000):
            if started is None or ended is None:
                continue
            total, count = totals.get(job_type, (0.0, 0))
            totals[job_type] = (total + (ended - started).total_seconds(), count + 1)
        retried = (
            attempts.filter(finished_at__gte=since, outcome__in=["failed", "timed_out"])
            .values_list("job__job_type")
            .annotate(n=Count("id"))
            .values_list("job__job_type", "n")
        )
        for job_type, n in retried:
            row(job_type).retried_attempts = n
        minutes = window.total_seconds() / 60
        for s in by_type.values():
            decided = s.succeeded + s.failed
            s.failure_rate = round(s.failed / decided, 4) if decided else None
            s.throughput_per_minute = round(s.finished / minutes, 3)
            if s.job_type in totals:
                total, count = totals[s.job_type]
                s.avg_duration_seconds = round(total / count, 3)
        rows.extend(sorted(by_type.values(), key=lambda s: s.job_type))
    return rows


def _row_maker(by_type: dict[str, TypeStats], window: str) -> Callable[[str], TypeStats]:
    def row(job_type: str) -> TypeStats:
        return by_type.setdefault(job_type, TypeStats(job_type=job_type, window=window))

    return row
