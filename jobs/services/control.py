"""Cancelling, retrying and reporting progress on jobs."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.errors import InvalidTransition
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.services.dispatch import jobs_send
from jobs.services.fairness import submission_admit
from jobs.services.messages import job_message
from jobs.services.transitions import running_filter

logger = logging.getLogger(__name__)

_CANCELLABLE_AT_ONCE = (JobStatus.QUEUED, JobStatus.RETRYING)
_RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)

#: What an explicit retry or a replay resets: the job is queued again as if new
#: (its attempts and audit trail stay).
REQUEUED_FIELDS: dict[str, Any] = {
    "status": JobStatus.QUEUED,
    "cancel_requested_at": None,
    "finished_at": None,
    "dead_lettered_at": None,
    "result": None,
    "progress": 0,
    "progress_message": "",
    "error_type": "",
    "error_message": "",
    "error_traceback": "",
    "enqueued_at": None,  # until the new message reaches Redis (the outbox relay's cue)
}


def job_cancel_refusal(job: Job) -> str | None:
    """Why :func:`job_cancel` would refuse (or do nothing to) this job now; None if it would not."""
    if job.status in _CANCELLABLE_AT_ONCE:
        return None
    if job.status == JobStatus.RUNNING:
        return "a cancel was already requested" if job.cancel_requested_at is not None else None
    return f"it already finished ({job.status})"


def job_retry_refusal(job: Job) -> str | None:
    """Why :func:`job_retry` would refuse this job now; None if it would not."""
    if job.status in _RETRYABLE:
        return None
    return f"it is {job.status}; only failed or cancelled jobs can be retried"


def job_cancel(*, job: Job, user: User | None = None, via: str = "system") -> Job:
    """Cancel a job that has not finished.

    A queued or retrying job is cancelled at once; its message is acknowledged
    without running when a worker picks it up. A running job is asked to stop:
    it sees the request at its next progress report or checkpoint.

    Raises:
      InvalidTransition: the job already finished.
    """
    now = timezone.now()
    changed = Job.objects.filter(pk=job.pk, status__in=_CANCELLABLE_AT_ONCE).update(
        status=JobStatus.CANCELLED, cancel_requested_at=now, finished_at=now
    )
    if not changed:
        changed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            cancel_requested_at=Coalesce(F("cancel_requested_at"), now)
        )
    job.refresh_from_db()
    if not changed:
        raise InvalidTransition(
            f"Job {job.pk} is {job.status} and cannot be cancelled; only queued, "
            "retrying or running jobs can."
        )
    kind = (
        JobEventKind.CANCELLED
        if job.status == JobStatus.CANCELLED
        else JobEventKind.CANCEL_REQUESTED
    )
    _audit(job, kind, user=user, via=via)
    logger.info(
        "Cancel requested for job %s (now %s) via %s.",
        job.pk,
        job.status,
        via,
        extra=_log_fields(job),
    )
    return job


def job_retry(
    *,
    job: Job,
    enforce_limits: bool,
    user: User | None = None,
    via: str = "system",
    kind: JobEventKind = JobEventKind.RETRIED,
) -> Job:
    """Queue a failed or cancelled job again, with a fresh retry budget.

    The fresh budget is the design (ARCHITECTURE.md, principle 3): an explicit
    retry starts the job over, as if new. So with ``enforce_limits`` it also
    costs what one submission costs: it is admitted against the organization's
    submission rate limit and monthly quota (an inactive organization is
    refused), before anything changes. Retries by a tenant (the API) pass
    ``enforce_limits=True``; operators' retries (admin, CLI) pass False, and
    are audited like every retry. A job whose ``scheduled_for`` is still ahead
    (a delayed job cancelled before its time) waits until then again.

    Raises:
      InvalidTransition: the job is not failed or cancelled.
      RateLimited, QuotaExceeded, OrganizationInactive: refused by the limits
        (only with ``enforce_limits``); nothing changed.
      BrokerUnavailable: Redis did not answer the admission; nothing changed.
    """
    with transaction.atomic():
        row = (
            Job.objects.select_for_update(of=("self",))
            .select_related("organization")
            .filter(pk=job.pk, status__in=_RETRYABLE)
            .first()
        )
        if row is None:
            job.refresh_from_db()
            raise InvalidTransition(
                f"Job {job.pk} is {job.status}; only failed or cancelled jobs can be retried."
            )
        if enforce_limits:
            submission_admit(organization=row.organization)
        Job.objects.filter(pk=job.pk).update(**REQUEUED_FIELDS)
        job.refresh_from_db()
        _audit(job, kind, user=user, via=via)
        message = job_message(job)
        delay_ms = _remaining_delay_ms(job)
        transaction.on_commit(lambda: jobs_send([(message, delay_ms)]))
    logger.info(
        "Job %s queued again by an explicit %s via %s.", job.pk, kind, via, extra=_log_fields(job)
    )
    return job


def _remaining_delay_ms(job: Job) -> int | None:
    """How long a job still has to wait for its ``scheduled_for``, in ms (None: not at all)."""
    if job.scheduled_for is None:
        return None
    remaining_ms = int((job.scheduled_for - timezone.now()).total_seconds() * 1000)
    return remaining_ms if remaining_ms > 0 else None


def job_cancel_for_inactive_organization(*, job_id: str) -> bool:
    """Cancel a job that has not started because its organization was deactivated."""
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, status__in=_CANCELLABLE_AT_ONCE).update(
            status=JobStatus.CANCELLED,
            cancel_requested_at=now,
            finished_at=now,
            error_type="OrganizationInactive",
            error_message="Cancelled because the organization is inactive.",
        )
    )


def _log_fields(job: Job) -> dict[str, object]:
    return {"job_id": str(job.pk), "organization_id": job.organization_id, "actor": job.job_type}


def _audit(job: Job, kind: JobEventKind, *, user: User | None, via: str, **detail: object) -> None:
    JobEvent.objects.create(
        job=job,
        organization_id=job.organization_id,
        kind=kind,
        via=via,
        user=user if user is not None and user.is_authenticated else None,
        detail=detail,
    )


def job_report_progress(*, job_id: str, attempt: int, percent: int, message: str = "") -> bool:
    """Store a running job's progress. Returns True when a cancel has been requested."""
    percent = max(0, min(100, int(percent)))
    Job.objects.filter(running_filter(job_id, attempt)).update(
        progress=percent, progress_message=message[:500]
    )
    return job_cancel_requested(job_id=job_id)


def job_cancel_requested(*, job_id: str) -> bool:
    return Job.objects.filter(pk=job_id, cancel_requested_at__isnull=False).exists()
