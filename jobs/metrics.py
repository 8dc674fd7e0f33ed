"""Job metrics for Prometheus: what workers record, and the one function other code calls.

Workers record through the :class:`~jobs.middleware.metrics.JobMetrics`
middleware; code that defers a job (the fairness middleware) calls
:func:`record_deferral`. Under ``manage.py rundramatiq`` every worker process
writes to the shared ``PROMETHEUS_MULTIPROC_DIR`` and the exporter
(:mod:`jobs.exporter`) sums them; elsewhere (tests, the web process) the
metrics live in the process's default registry.

Every metric of ours, here and in the exporter, starts with :data:`PREFIX`, so
none collides with another exporter's in one Prometheus. Labelled counters are
created at zero for every registered job type when a worker boots
(:func:`initialise_series`), so ``rate()`` and ``absent()`` see a series on a
fresh worker.

Organization is not a label unless ``JOBS_METRICS_ORGANIZATION_IDS`` lists
some organizations: then every job metric gets an ``organization`` label whose
value is the id for listed organizations, ``other`` for the rest and
``system`` for system jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from jobs.conf import jobs_settings

#: The namespace of every metric this project exports.
PREFIX = "toolboxai_jobs_"
#: Why a job was put back without using a retry (``jobs.middleware.fairness``).
DEFERRAL_REASONS = ("org_concurrency", "type_rate_limit")
#: Why a worker process stopped to be replaced (``jobs.middleware.recycling``).
RECYCLE_REASONS = ("max_jobs", "max_rss")
#: Final statuses counted by ``toolboxai_jobs_total``.
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: Label value of the pre-created series when organizations are labelled.
_OTHER_ORGANIZATION = "other"

#: Seconds: from 10 ms jobs to hour-long AI generations.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: Seconds a job waited in Redis after it became due.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600)


class _Metrics:
    def __init__(self, *, organization_ids: frozenset[int]) -> None:
        self.organization_ids = organization_ids
        org = ["organization"] if organization_ids else []
        self.jobs = Counter(
            f"{PREFIX}total",
            "Jobs that workers finished, by final status (succeeded, failed, cancelled).",
            ["job_type", "queue", "status", *org],
        )
        self.duration = Histogram(
            f"{PREFIX}duration_seconds",
            "Run time of one attempt, in seconds.",
            ["job_type", *org],
            buckets=DURATION_BUCKETS,
        )
        self.wait = Histogram(
            f"{PREFIX}wait_seconds",
            "Time from when a job was due (enqueued, or its delay or backoff ended) to its start.",
            ["job_type", *org],
            buckets=WAIT_BUCKETS,
        )
        self.deferred = Counter(
            f"{PREFIX}deferred_total",
            "Jobs put back without using a retry (organization concurrency cap, type rate limit).",
            ["job_type", "reason", *org],
        )
        self.retried = Counter(
            f"{PREFIX}retried_total",
            "Attempts that failed and scheduled a retry.",
            ["job_type", *org],
        )
        self.recycled = Counter(
            f"{PREFIX}worker_recycles_total",
            "Worker processes that stopped at JOBS_WORKER_MAX_JOBS or JOBS_WORKER_MAX_RSS_MB "
            "to be replaced by a fresh one.",
            ["reason"],
        )

    def org_labels(self, organization_id: int | None) -> list[str]:
        if not self.organization_ids:
            return []
        if organization_id is None:
            return ["system"]
        return [str(organization_id) if organization_id in self.organization_ids else "other"]


_lock = threading.Lock()
_metrics: _Metrics | None = None


def _get() -> _Metrics:
    # Created on first use, not at import: by then rundramatiq has set PROMETHEUS_MULTIPROC_DIR.
    # (prometheus_client itself re-opens its files when a worker process forks.)
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _Metrics(organization_ids=jobs_settings.metrics_organization_ids)
    return _metrics


def initialise_series(job_types: Iterable[tuple[str, str]]) -> None:
    """Create every labelled series at zero, so a fresh worker exports them all.

    Parameters:
      job_types: ``(job type, home queue)`` pairs, every registered job type.
    """
    m = _get()
    org = [_OTHER_ORGANIZATION] if m.organization_ids else []
    for job_type, queue in job_types:
        for status in FINAL_STATUSES:
            m.jobs.labels(job_type, queue, status, *org)
        for reason in DEFERRAL_REASONS:
            m.deferred.labels(job_type, reason, *org)
        m.retried.labels(job_type, *org)
        m.duration.labels(job_type, *org)
        m.wait.labels(job_type, *org)
    for reason in RECYCLE_REASONS:
        m.recycled.labels(reason)


def record_deferral(reason: str, *, job_type: str, organization_id: int | None = None) -> None:
    """Count one job put back for later without using a retry.

    Parameters:
      reason: one of :data:`DEFERRAL_REASONS`; never an id.
      job_type: the job's type.
      organization_id: the job's organization, used only when organizations are labelled.
    """
    m = _get()
    m.deferred.labels(job_type, reason, *m.org_labels(organization_id)).inc()


def record_recycle(reason: str) -> None:
    """Count one worker process stopping to be replaced (``reason``: one of :data:`RECYCLE_REASONS`)."""
    _get().recycled.labels(reason).inc()


def record_job_started(
    *, job_type: str, wait_seconds: float, organization_id: int | None = None
) -> None:
    """Observe how long a job waited between becoming due and starting."""
    m = _get()
    m.wait.labels(job_type, *m.org_labels(organization_id)).observe(max(0.0, wait_seconds))


def record_job_finished(
    *,
    job_type: str,
    queue: str,
    status: str,
    duration_seconds: float,
    organization_id: int | None = None,
) -> None:
    """Observe one attempt's run time and count its outcome.

    ``status`` is the job's next status: ``retrying`` counts a retry, the
    final statuses (``succeeded``, ``failed``, ``cancelled``) count a job.
    """
    m = _get()
    org = m.org_labels(organization_id)
    m.duration.labels(job_type, *org).observe(max(0.0, duration_seconds))
    if status == "retrying":
        m.retried.labels(job_type, *org).inc()
    else:
        m.jobs.labels(job_type, queue, status, *org).inc()
