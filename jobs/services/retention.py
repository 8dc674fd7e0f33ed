"""Retention of job history (``cleanup.remove_old_jobs``): short batched deletes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.conf import jobs_settings
from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)


def jobs_remove_old(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    between_batches: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Delete succeeded and cancelled jobs older than JOBS_RETENTION_DAYS, failed ones older
    than JOBS_FAILED_RETENTION_DAYS; their attempts, events and deliveries go with them.

    Each batch is its own short transaction, so no lock is held for long and
    workers keep writing to the ledger meanwhile. Active jobs are never deleted.
    """
    now = now or timezone.now()
    size = batch_size or jobs_settings.cleanup_batch_size
    finished_cutoff = now - timedelta(days=jobs_settings.retention_days)
    failed_cutoff = now - timedelta(days=jobs_settings.failed_retention_days)
    finished = _older_than(
        Job.objects.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.CANCELLED]), finished_cutoff
    )
    failed = _older_than(Job.objects.filter(status=JobStatus.FAILED), failed_cutoff)
    result = {
        "deleted_finished": _delete_in_batches(finished, size, between_batches),
        "deleted_failed": _delete_in_batches(failed, size, between_batches),
    }
    logger.info(
        "Removed %d finished job(s) older than %s and %d failed job(s) older than %s.",
        result["deleted_finished"],
        finished_cutoff.isoformat(),
        result["deleted_failed"],
        failed_cutoff.isoformat(),
    )
    return result


def _older_than(qs: QuerySet[Job], cutoff: datetime) -> QuerySet[Job]:
    # created_at bounds the scan with the (status, created_at) index; finished_at decides.
    return qs.filter(created_at__lt=cutoff).filter(
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True)
    )


def _delete_in_batches(
    qs: QuerySet[Job], size: int, between_batches: Callable[[], None] | None
) -> int:
    total = 0
    while True:
        ids = list(qs.order_by("created_at").values_list("pk", flat=True)[:size])
        if not ids:
            return total
        with transaction.atomic():
            Job.objects.filter(pk__in=ids).delete()
        total += len(ids)
        if between_batches is not None:
            between_batches()
