"""``cleanup.remove_old_jobs``: retention of job history, daily at 03:00 UTC."""

from __future__ import annotations

from typing import Any

from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.runtime import current_job
from jobs.scheduler.registry import periodic
from jobs.services.retention import jobs_remove_old


class CleanupPayload(PayloadSerializer):
    pass


@job_type(
    "cleanup.remove_old_jobs",
    queue="low_priority",
    payload=CleanupPayload,
    public=False,
    description="Delete finished jobs past JOBS_RETENTION_DAYS, failed ones past "
    "JOBS_FAILED_RETENTION_DAYS.",
    max_retries=2,
    min_backoff_ms=60_000,
    max_backoff_ms=600_000,
    time_limit_ms=3_600_000,
    soft_time_limit_ms=3_540_000,
)
def remove_old_jobs() -> dict[str, Any]:
    """Delete old history in batches, stopping between batches if cancelled."""
    job = current_job()
    return jobs_remove_old(between_batches=job.checkpoint if job is not None else None)


periodic(
    "cleanup.remove_old_jobs",
    job_type="cleanup.remove_old_jobs",
    cron="0 3 * * *",
    grace_ms=12 * 3_600_000,
    description="Daily at 03:00 UTC.",
)
