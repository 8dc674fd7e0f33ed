"""Reads of dead letters: failed jobs whose retries ran out, listed and grouped.

The ledger is the history: a dead letter is a ``failed`` job with
``dead_lettered_at`` set, and its row (payload, error, attempts) is kept for
good, long after Redis drops its copy of the message (``JOBS_DEAD_MESSAGE_TTL_MS``).
Groups gather the failed jobs of one type with one error type and one
*shape* of error message (ids and numbers blanked out). Reads take the
organizations the caller may see; ``None`` means every job, system jobs
included (superusers and the CLI). Replay and purge are
:mod:`jobs.services.dead_letters`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import Left

from jobs.errors import JobNotFound
from jobs.models import Job, JobStatus
from jobs.queues import CONSUMED_QUEUES, band_queue_names
from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.queues import dead_message_ids
from tenants.models import Organization

#: How much of an error message takes part in grouping.
_GROUPED_MESSAGE_CHARS = 500

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{12,}\b", re.I)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")


def normalise_error_message(message: str) -> str:
    """The shape of an error message: ids, hex and numbers replaced, spaces collapsed.

    ``"Timeout after 30 s on 4f0c…"`` and ``"Timeout after 31 s on 9ab2…"`` share a group.
    """
    text = message[:_GROUPED_MESSAGE_CHARS]
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


def group_key(*, job_type: str, error_type: str, message: str) -> str:
    """A short stable id of a group, safe in URLs."""
    raw = f"{job_type}\0{error_type}\0{message}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class DeadLetterGroup:
    """Failed jobs sharing a type, an error type and a normalised error message.

    Parameters:
      key: stable id of the group (see :func:`group_key`).
      count: failed jobs in the group.
      sample_message: one real (unnormalised) error message of the group.
      first_failed_at / last_failed_at: when the oldest and newest failed.
      in_redis: how many of their messages Redis still keeps dead-lettered
        (filled by :func:`dead_letter_groups` with ``count_in_redis=True``).
    """

    key: str
    job_type: str
    error_type: str
    message: str
    sample_message: str
    count: int = 0
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None
    in_redis: int | None = None
    organization_ids: set[int | None] = field(default_factory=set)


def dead_letters(
    *,
    organizations: QuerySet[Organization] | None = None,
    organization: Organization | None = None,
    job_type: str | None = None,
    queue: str | None = None,
) -> QuerySet[Job]:
    """Dead-lettered jobs the caller may see, most recently failed first."""
    qs = Job.objects.filter(status=JobStatus.FAILED, dead_lettered_at__isnull=False)
    if organizations is not None:
        qs = qs.filter(organization__in=organizations)
    if organization is not None:
        qs = qs.filter(organization=organization)
    if job_type:
        qs = qs.filter(job_type=job_type)
    if queue:
        qs = qs.filter(queue=queue)
    return qs.order_by("-dead_lettered_at")


def dead_letter_ids(
    *,
    organization: Organization | None = None,
    job_type: str | None = None,
    queue: str | None = None,
) -> list[str]:
    """Ids of the dead letters :func:`dead_letters` selects, most recently failed first."""
    rows = dead_letters(organization=organization, job_type=job_type, queue=queue)
    return [str(pk) for pk in rows.values_list("pk", flat=True)]


def dead_letter_groups(
    *,
    organizations: QuerySet[Organization] | None,
    count_in_redis: bool = False,
    job_type: str | None = None,
) -> list[DeadLetterGroup]:
    """Failed jobs grouped by (type, error type, normalised message), largest group first."""
    rows = (
        dead_letters(organizations=organizations, job_type=job_type)
        .annotate(head=Left("error_message", _GROUPED_MESSAGE_CHARS))
        .values("job_type", "error_type", "head", "organization_id")
        .annotate(n=Count("id"), first=Min("finished_at"), last=Max("finished_at"))
        .order_by()
    )
    groups: dict[str, DeadLetterGroup] = {}
    for row in rows:
        message = normalise_error_message(row["head"] or "")
        key = group_key(job_type=row["job_type"], error_type=row["error_type"], message=message)
        group = groups.get(key)
        if group is None:
            group = groups[key] = DeadLetterGroup(
                key=key,
                job_type=row["job_type"],
                error_type=row["error_type"],
                message=message,
                sample_message=row["head"] or "",
            )
        group.count += row["n"]
        group.organization_ids.add(row["organization_id"])
        if row["first"] is not None and (
            group.first_failed_at is None or row["first"] < group.first_failed_at
        ):
            group.first_failed_at = row["first"]
        if row["last"] is not None and (
            group.last_failed_at is None or row["last"] > group.last_failed_at
        ):
            group.last_failed_at = row["last"]
    result = sorted(groups.values(), key=lambda g: (-g.count, g.job_type, g.message))
    if count_in_redis and result:
        _count_in_redis(result, organizations=organizations, job_type=job_type)
    return result


def _count_in_redis(
    groups: list[DeadLetterGroup],
    *,
    organizations: QuerySet[Organization] | None,
    job_type: str | None,
) -> None:
    """Fill each group's ``in_redis``: one pass over the dead letters, one scan of Redis."""
    dead = dead_messages_in_redis()
    by_key = {group.key: group for group in groups}
    for group in groups:
        group.in_redis = 0
    rows = dead_letters(organizations=organizations, job_type=job_type).values_list(
        "id", "job_type", "error_type", "error_message"
    )
    for job_id, row_type, error_type, message in rows.iterator(chunk_size=2_000):
        if str(job_id) not in dead:
            continue
        key = group_key(
            job_type=row_type, error_type=error_type, message=normalise_error_message(message)
        )
        found = by_key.get(key)
        if found is not None:
            found.in_redis = (found.in_redis or 0) + 1


def dead_letter_group_jobs(
    *, group: DeadLetterGroup, organizations: QuerySet[Organization] | None
) -> QuerySet[Job]:
    """The failed jobs of a group, as a query the caller can order and paginate."""
    ids = dead_letter_group_job_ids(group=group, organizations=organizations)
    return dead_letters(organizations=organizations).filter(pk__in=ids)


def dead_letter_group(
    *, key: str, organizations: QuerySet[Organization] | None, count_in_redis: bool = False
) -> DeadLetterGroup | None:
    """One group by its key, among the jobs the caller may see."""
    for group in dead_letter_groups(organizations=organizations, count_in_redis=count_in_redis):
        if group.key == key:
            return group
    return None


def dead_letter_group_job_ids(
    *, group: DeadLetterGroup, organizations: QuerySet[Organization] | None
) -> list[str]:
    """Ids of the failed jobs of a group, oldest failure first."""
    candidates = (
        dead_letters(organizations=organizations)
        .filter(job_type=group.job_type, error_type=group.error_type)
        .order_by("finished_at")
        .values_list("id", "error_message")
    )
    return [
        str(job_id)
        for job_id, message in candidates.iterator(chunk_size=2_000)
        if normalise_error_message(message) == group.message
    ]


def dead_letter_get(*, job_id: str, organization: Organization | None = None) -> Job:
    """One dead letter. Raises JobNotFound when the id is not a dead letter (of that organization)."""
    job = dead_letters(organization=organization).filter(pk=job_id).first()
    if job is None:
        raise JobNotFound(
            f"Job {job_id!r} is not a dead letter"
            + (f" of organization {organization.slug!r}" if organization else "")
            + ". List dead letters with `python manage.py jobs dead-letters list`."
        )
    return job


@dataclass(frozen=True)
class DeadMessage:
    """A dead-lettered message Redis still keeps.

    Parameters:
      redis_key: the ``<namespace>:<band>.XQ`` sorted set it is in.
      redis_message_id: its id in that set and in ``<band>.XQ.msgs``.
    """

    job_id: str
    redis_key: str
    redis_message_id: str


def dead_messages_in_redis(broker: JobsRedisBroker | None = None) -> dict[str, DeadMessage]:
    """Every dead-lettered message in Redis, by job id (the Dramatiq message id)."""
    found = dead_message_ids(broker or get_broker(), dead_letter_bands())
    return {
        job_id: DeadMessage(job_id=job_id, redis_key=key, redis_message_id=redis_id)
        for job_id, (key, redis_id) in found.items()
    }


def dead_letter_bands() -> list[str]:
    """Every band of every consumed queue: where Redis keeps dead-lettered messages."""
    return [band for queue in CONSUMED_QUEUES for band in band_queue_names(queue)]
