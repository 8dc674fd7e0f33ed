"""Each queue's backlog and throughput, for an organization (from the ledger) or for everyone.

The API's ``GET /api/v1/queues/`` reads these. Redis holds every
organization's messages in the same lists, so an organization's share of a
queue is read from its ledger rows: queued (ready, or delayed until
``scheduled_for``), retrying (delayed until its backoff ends) and running (in
flight). The totals of an operator come from Redis itself
(:func:`jobs.selectors.queues.queue_stats`), as the ``jobs`` CLI shows them.
Dead letters and throughput come from the ledger either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import ACTIVE_STATUSES, Job, JobAttempt, JobStatus
from jobs.queues import CONSUMED_QUEUES
from jobs.selectors.queues import WorkerInfo, queue_stats, workers
from jobs.transport.broker import JobsRedisBroker
from tenants.models import Organization


@dataclass
class QueueOverview:
    """One queue, for one organization or for everyone.

    Parameters:
      ready: waiting for a worker now.
      delayed: waiting for a time: a delayed job's ``scheduled_for``, a retry's backoff.
      in_flight: running (an organization's) or fetched by a worker and not yet
        acknowledged (the totals).
      dead_lettered: dead letters in the ledger.
      oldest_waiting_seconds: how long the oldest ready job has waited; None when none waits.
      finished_last_minute / finished_last_hour: jobs that succeeded or failed in that
        window (cancelled ones are left out: no worker finished them).
    """

    queue: str
    ready: int = 0
    delayed: int = 0
    in_flight: int = 0
    dead_lettered: int = 0
    oldest_waiting_seconds: float | None = None
    finished_last_minute: int = 0
    finished_last_hour: int = 0


def queue_overview(
    *, organization: Organization | None, broker: JobsRedisBroker | None = None
) -> list[QueueOverview]:
    """Every consumed queue: ``organization``'s share of it, or (None) the totals."""
    now = timezone.now()
    rows = {queue: QueueOverview(queue=queue) for queue in CONSUMED_QUEUES}
    jobs = (
        Job.objects.all() if organization is None else Job.objects.filter(organization=organization)
    )
    if organization is None:
        for stats in queue_stats(broker):
            total = rows[stats.queue]
            total.ready, total.delayed, total.in_flight = (
                stats.ready,
                stats.delayed,
                stats.in_flight,
            )
            total.oldest_waiting_seconds = stats.oldest_ready_age_seconds
    else:
        _backlog_from_ledger(rows, jobs, now)
    dead = (
        jobs.filter(status=JobStatus.FAILED, dead_lettered_at__isnull=False)
        .values("queue")
        .annotate(n=Count("id"))
        .order_by()
    )
    for count in dead:
        if count["queue"] in rows:
            rows[count["queue"]].dead_lettered = count["n"]
    finished = (
        jobs.filter(
            finished_at__gte=now - timedelta(hours=1),
            status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED),
        )
        .values("queue")
        .annotate(
            hour=Count("id"),
            minute=Count("id", filter=Q(finished_at__gte=now - timedelta(minutes=1))),
        )
        .order_by()
    )
    for window in finished:
        if window["queue"] in rows:
            rows[window["queue"]].finished_last_hour = window["hour"]
            rows[window["queue"]].finished_last_minute = window["minute"]
    return list(rows.values())


def _backlog_from_ledger(
    rows: dict[str, QueueOverview], jobs: QuerySet[Job], now: datetime
) -> None:
    due = Q(scheduled_for__isnull=True) | Q(scheduled_for__lte=now)
    counts = (
        jobs.filter(status__in=ACTIVE_STATUSES)
        .values("queue")
        .annotate(
            ready=Count("id", filter=Q(status=JobStatus.QUEUED) & due),
            delayed=Count(
                "id",
                filter=(Q(status=JobStatus.QUEUED) & ~due) | Q(status=JobStatus.RETRYING),
            ),
            in_flight=Count("id", filter=Q(status=JobStatus.RUNNING)),
            waiting_since=Min(
                Coalesce("scheduled_for", "enqueued_at", "created_at"),
                filter=Q(status=JobStatus.QUEUED) & due,
            ),
        )
        .order_by()
    )
    for count in counts:
        row = rows.get(count["queue"])
        if row is None:
            continue
        row.ready, row.delayed, row.in_flight = count["ready"], count["delayed"], count["in_flight"]
        since = count["waiting_since"]
        if since is not None:
            row.oldest_waiting_seconds = max(0.0, (now - since).total_seconds())


@dataclass(frozen=True)
class WorkerOverview:
    """A worker process alive, and how many jobs it is running now (open attempts)."""

    info: WorkerInfo
    jobs_in_flight: int


def worker_overview(*, broker: JobsRedisBroker | None = None) -> list[WorkerOverview]:
    """Every worker process that heartbeats, with its running jobs (operators only)."""
    alive = workers(broker)
    open_attempts = (
        JobAttempt.objects.filter(finished_at__isnull=True, job__status=JobStatus.RUNNING)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    running: dict[str, int] = {}
    for row in open_attempts:
        broker_id = str(row["worker_id"]).rsplit(":", 1)[-1]
        running[broker_id] = running.get(broker_id, 0) + row["n"]
    return [WorkerOverview(info=w, jobs_in_flight=running.get(w.broker_id, 0)) for w in alive]
