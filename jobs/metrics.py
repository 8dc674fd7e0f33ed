"""Job metrics for Prometheus: what workers record, and the one function other code calls.

Workers record through the :class:`~jobs.middleware.metrics.JobMetrics`
middleware; code that defers a job (the fairness middleware) calls
:func:`record_deferral`. Under ``manage.py rundramatiq`` every worker process
writes to the shared ``PROMETHEUS_MULTIPROC_DIR`` and the exporter
(:mod:`jobs.exporter`) sums them; elsewhere (tests, the web process) the
metrics live in the process's default registry.

Organization is not a label unless ``JOBS_METRICS_ORGANIZATION_IDS`` lists
some organizations: then every job metric gets an ``organization`` label whose
value is the id for listed organizations, ``other`` for the rest and
``system`` for system jobs.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Histogram

from jobs.conf import jobs_settings

#: Seconds: from 10 ms jobs to hour-long AI generations.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: Seconds a job waited in Redis after it became due.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600)


class _Metrics:
    def __init__(self, *, organization_ids: frozenset[int]) -> None:
        self.organization_ids = organization_ids
        org = ["organization"] if organization_ids else []
        self.jobs = Counter(
            "jobs_total",
            "Jobs that workers finished, by final status (succeeded, failed, cancelled).",
            ["job_type", "queue", "status", *org],
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Run time of one attempt, in seconds.",
            ["job_type", *org],
            buckets=DURATION_BUCKETS,
        )
        self.wait = Histogram(
            "job_wait_seconds",
            "Time from when a job was due (enqueued, or its delay or backoff ended) to its start.",
            ["job_type", *org],
            buckets=WAIT_BUCKETS,
        )
        self.deferred = Counter(
            "jobs_deferred_total",
            "Jobs put back without using a retry (organization concurrency cap, type rate limit).",
            ["reason", *org],
        )
        self.retried = Counter(
            "jobs_retried_total",
            "Attempts that failed and scheduled a retry.",
            ["job_type", *org],
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


def record_deferral(reason: str, *, organization_id: int | None = None) -> None:
    """Count one job put back for later without using a retry.

    Parameters:
      reason: a short, fixed word (``org_concurrency``, ``type_rate_limit``); never an id.
      organization_id: the job's organization, used only when organizations are labelled.
    """
    m = _get()
    m.deferred.labels(reason, *m.org_labels(organization_id)).inc()


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
