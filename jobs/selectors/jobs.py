"""Reads of jobs. Every read for an organization takes it explicitly.

:func:`job_find` is the operators' read (the CLI), across organizations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from jobs.errors import JobNotFound
from jobs.models import Job, JobAttempt
from jobs.redaction import redact_text
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


def job_find(*, job_id: str) -> Job:
    """One job by id, in any organization (operators: the CLI, the recovery tools).

    Raises:
      JobNotFound: no such job.
    """
    job = Job.objects.filter(pk=job_id).select_related("organization").first()
    if job is None:
        raise JobNotFound(
            f"No job with id {job_id!r}. Check the id with `python manage.py jobs inspect`."
        )
    return job


#: What an event stream compares between two reads of a job.
STREAM_FIELDS = ("status", "attempts", "progress", "progress_message")


def job_stream_snapshot(*, job_id: uuid.UUID, organization_id: int) -> dict[str, Any] | None:
    """The few fields of a job an event stream follows, or None once the job is gone."""
    return (
        Job.objects.filter(pk=job_id, organization_id=organization_id)
        .values(*STREAM_FIELDS)
        .first()
    )


def job_stream_snapshots(
    *, jobs: Iterable[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], dict[str, Any]]:
    """:func:`job_stream_snapshot` of many jobs in one query, keyed by (job id, organization id).

    Each job is read only in its own organization; a job that is gone (or not
    in that organization) is missing from the answer.
    """
    by_organization: dict[int, list[uuid.UUID]] = {}
    for job_id, organization_id in jobs:
        by_organization.setdefault(organization_id, []).append(job_id)
    if not by_organization:
        return {}
    scope = Q()
    for organization_id, job_ids in by_organization.items():
        scope |= Q(organization_id=organization_id, pk__in=job_ids)
    rows = Job.objects.filter(scope).values("id", "organization_id", *STREAM_FIELDS)
    return {(row.pop("id"), row.pop("organization_id")): row for row in rows}


def job_for_stream(*, job_id: uuid.UUID, organization_id: int) -> Job | None:
    """The whole job, for an event stream's ``status`` event (None once it is gone)."""
    return Job.objects.filter(pk=job_id, organization_id=organization_id).first()


def job_attempts(*, job_id: uuid.UUID | str) -> list[JobAttempt]:
    """A job's attempts, first first."""
    return list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))


def task_job_row(*, job_id: uuid.UUID, job_type: str, organization_id: int | None) -> Job | None:
    """A job of one type by id, only in ``organization_id`` when given (``django.tasks`` results)."""
    jobs = Job.objects.filter(pk=job_id, job_type=job_type)
    if organization_id is not None:
        jobs = jobs.filter(organization_id=organization_id)
    return jobs.first()


#: How many of the newest rows whose stored error text holds a search term are checked
#: against what the admin shows (the redacted text).
ERROR_SEARCH_CANDIDATES = 1_000


def jobs_with_shown_error_containing(
    queryset: QuerySet[Job], term: str, *, candidates: int = ERROR_SEARCH_CANDIDATES
) -> QuerySet[Job]:
    """The jobs of ``queryset`` whose error message, **as shown** (redacted), contains ``term``.

    Matching the stored text would make search an oracle: a term found only
    inside a redacted secret would still select the row, telling its value one
    guess at a time. So the database narrows to the newest ``candidates``
    rows whose stored text contains the term, and only those whose redacted
    text still contains it are kept.
    """
    folded = term.casefold()
    rows = (
        queryset.filter(error_message__icontains=term)
        .order_by("-created_at")
        .values_list("pk", "error_message")[:candidates]
    )
    shown = [pk for pk, message in rows if folded in redact_text(message or "").casefold()]
    return queryset.filter(pk__in=shown)
