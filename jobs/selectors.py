"""Reads of the ledger. Every read for an organization takes it explicitly."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import QuerySet

from jobs.errors import JobNotFound
from jobs.models import Job
from tenants.models import Organization


def jobs_for_organization(
    *,
    organization: Organization,
    status: str | None = None,
    job_type: str | None = None,
    queue: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Job]:
    """One organization's jobs, newest first, optionally filtered."""
    qs = Job.objects.filter(organization=organization)
    if status:
        qs = qs.filter(status=status)
    if job_type:
        qs = qs.filter(job_type=job_type)
    if queue:
        qs = qs.filter(queue=queue)
    if created_after is not None:
        qs = qs.filter(created_at__gte=created_after)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    return qs.order_by("-created_at", "-id")


def job_get(*, organization: Organization, job_id: uuid.UUID | str) -> Job:
    """One job of the organization.

    Raises:
      JobNotFound: no such job in this organization (another organization's
        jobs are reported exactly like missing ones).
    """
    try:
        parsed = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(f"No job {str(job_id)[:64]!r}: job ids are UUIDs.") from None
    job = Job.objects.filter(organization=organization, pk=parsed).first()
    if job is None:
        # The id is not echoed: the answer is the same bytes for any id that is not yours.
        raise JobNotFound(
            "No job with this id in this organization; list yours with GET /api/v1/jobs/."
        )
    return job
