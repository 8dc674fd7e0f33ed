"""Retention of job history (``cleanup.remove_old_jobs``): short, paced, batched deletes.

Retention runs beside live work on the same Postgres, so it is written to cost the
live system little: each batch is one statement in its own short transaction
(the jobs, re-checked against the cutoff, with their attempts, events and
deliveries), found by an index range that starts where the previous batch ended
(so no batch re-reads the dead index entries of the ones before it), and a pause
after each batch (``JOBS_CLEANUP_PAUSE_MS``) leaves Postgres to the workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from jobs.conf import jobs_settings
from jobs.models import JobStatus

logger = logging.getLogger(__name__)

# One statement per batch: the jobs that are still expired (a job retried since the
# batch was read is left alone), then the rows that reference them. The foreign keys
# are deferred, so they are checked at commit, once all four deletes are done.
_DELETE_BATCH_SQL = """
WITH doomed AS (
    DELETE FROM jobs_job
    WHERE id = ANY(%(ids)s) AND status = ANY(%(statuses)s)
      AND created_at < %(cutoff)s AND (finished_at < %(cutoff)s OR finished_at IS NULL)
    RETURNING id
), attempts AS (
    DELETE FROM jobs_jobattempt WHERE job_id IN (SELECT id FROM doomed)
), events AS (
    DELETE FROM jobs_jobevent WHERE job_id IN (SELECT id FROM doomed)
), deliveries AS (
    DELETE FROM jobs_providerdelivery WHERE job_id IN (SELECT id FROM doomed)
)
SELECT count(*) FROM doomed
"""

# The next batch: created_at bounds the scan with the (status, created_at) index and
# starts where the last batch ended; finished_at decides.
_NEXT_BATCH_SQL = """
SELECT id, created_at FROM jobs_job
WHERE status = ANY(%(statuses)s) AND created_at < %(cutoff)s AND created_at >= %(after)s
  AND (finished_at < %(cutoff)s OR finished_at IS NULL)
ORDER BY created_at
LIMIT %(size)s
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def jobs_remove_old(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    pause_ms: int | None = None,
    between_batches: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Delete succeeded and cancelled jobs older than JOBS_RETENTION_DAYS, failed ones older
    than JOBS_FAILED_RETENTION_DAYS; their attempts, events and deliveries go with them.

    Each batch of ``batch_size`` jobs (default JOBS_CLEANUP_BATCH_SIZE) is its own
    short transaction, so no lock is held for long and workers keep writing to the
    ledger meanwhile; ``pause_ms`` (default JOBS_CLEANUP_PAUSE_MS) passes between
    batches. Active jobs are never deleted.
    """
    now = now or timezone.now()
    size = batch_size or jobs_settings.cleanup_batch_size
    pause_s = (jobs_settings.cleanup_pause_ms if pause_ms is None else pause_ms) / 1000
    finished_cutoff = now - timedelta(days=jobs_settings.retention_days)
    failed_cutoff = now - timedelta(days=jobs_settings.failed_retention_days)

    def pace() -> None:
        if pause_s > 0:
            time.sleep(pause_s)
        if between_batches is not None:
            between_batches()

    finished = [JobStatus.SUCCEEDED.value, JobStatus.CANCELLED.value]
    result = {
        "deleted_finished": _delete_in_batches(finished, finished_cutoff, size, pace),
        "deleted_failed": _delete_in_batches([JobStatus.FAILED.value], failed_cutoff, size, pace),
    }
    logger.info(
        "Removed %d finished job(s) older than %s and %d failed job(s) older than %s.",
        result["deleted_finished"],
        finished_cutoff.isoformat(),
        result["deleted_failed"],
        failed_cutoff.isoformat(),
    )
    return result


def _delete_in_batches(
    statuses: Sequence[str], cutoff: datetime, size: int, pace: Callable[[], None]
) -> int:
    total = 0
    after = _EPOCH
    params: dict[str, Any] = {"statuses": list(statuses), "cutoff": cutoff, "size": size}
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_NEXT_BATCH_SQL, {**params, "after": after})
            rows = cursor.fetchall()
        if not rows:
            return total
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_DELETE_BATCH_SQL, {**params, "ids": [pk for pk, _ in rows]})
            total += int(cursor.fetchone()[0])
        # Rows created at the same instant as the last one may remain: >= keeps them.
        after = rows[-1][1]
        if len(rows) < size:
            return total
        pace()
