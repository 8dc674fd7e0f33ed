"""Dead letters: failed jobs grouped by type and error, replayed, and purged from Redis.

The ledger is the history: a failed job keeps its row (and its error) for good,
long after Dramatiq's dead-letter TTL drops the message from Redis. Groups are
read from Postgres; Redis is only touched to count and purge the dead-lettered
messages it still keeps (``<namespace>:<band>.XQ`` sorted set plus
``<band>.XQ.msgs`` hash, see ``dramatiq/brokers/redis/dispatch.lua``).

The admin, the CLI and the API share these functions. Every read and write
takes ``organizations``: the organizations the caller may see, or ``None`` for
every job including system jobs (superusers and the CLI only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import Left
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import get_broker
from jobs.errors import InvalidTransition
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.queues import QUEUES, all_redis_queue_names
from tenants.models import Organization

logger = logging.getLogger(__name__)

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


def failed_jobs(*, organizations: QuerySet[Organization] | None) -> QuerySet[Job]:
    """Failed jobs the caller may see; ``organizations=None`` means all of them."""
    jobs = Job.objects.filter(status=JobStatus.FAILED)
    if organizations is not None:
        jobs = jobs.filter(organization__in=organizations)
    return jobs


def dead_letter_groups(
    *, organizations: QuerySet[Organization] | None, count_in_redis: bool = False
) -> list[DeadLetterGroup]:
    """Failed jobs grouped by (type, error type, normalised message), largest group first."""
    rows = (
        failed_jobs(organizations=organizations)
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
        dead = dead_messages_in_redis()
        for group in result:
            ids = dead_letter_group_job_ids(group=group, organizations=organizations)
            group.in_redis = sum(1 for job_id in ids if job_id in dead)
    return result


def dead_letter_group(
    *, key: str, organizations: QuerySet[Organization] | None
) -> DeadLetterGroup | None:
    """One group by its key, among the jobs the caller may see."""
    for group in dead_letter_groups(organizations=organizations):
        if group.key == key:
            return group
    return None


def dead_letter_group_job_ids(
    *, group: DeadLetterGroup, organizations: QuerySet[Organization] | None
) -> list[str]:
    """Ids of the failed jobs of a group, oldest failure first."""
    candidates = (
        failed_jobs(organizations=organizations)
        .filter(job_type=group.job_type, error_type=group.error_type)
        .order_by("finished_at")
        .values_list("id", "error_message")
    )
    return [
        str(job_id)
        for job_id, message in candidates.iterator(chunk_size=2_000)
        if normalise_error_message(message) == group.message
    ]


@dataclass
class ReplayResult:
    """What a replay did: the jobs queued again, and those skipped with the reason."""

    replayed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def dead_letter_replay(
    *,
    group: DeadLetterGroup,
    organizations: QuerySet[Organization] | None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    via: str = "system",
) -> ReplayResult:
    """Queue every job of a group again with a fresh retry budget (a ``replayed`` event each).

    Their old dead-lettered messages are removed from Redis, so they are not
    counted or replayed twice.
    """
    from jobs.services import job_retry

    result = ReplayResult()
    for job_id in dead_letter_group_job_ids(group=group, organizations=organizations):
        job = Job.objects.get(pk=job_id)
        try:
            job_retry(job=job, user=user, via=via, kind=JobEventKind.REPLAYED)  # type: ignore[arg-type]
        except InvalidTransition as exc:
            result.skipped.append((job_id, str(exc)))
        else:
            result.replayed.append(job_id)
    if result.replayed:
        _remove_from_redis(_select(dead_messages_in_redis(), result.replayed))
    logger.info(
        "Replayed %d job(s) of dead-letter group %s (%s, %s); skipped %d.",
        len(result.replayed),
        group.key,
        group.job_type,
        group.error_type,
        len(result.skipped),
    )
    return result


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


def dead_messages_in_redis(broker: RedisBroker | None = None) -> dict[str, DeadMessage]:
    """Every dead-lettered message in Redis, by job id (the Dramatiq message id)."""
    broker = broker or get_broker()
    found: dict[str, DeadMessage] = {}
    for band in all_redis_queue_names(QUEUES):
        key = f"{broker.namespace}:{band}.XQ"
        for redis_id, body in broker.client.hscan_iter(f"{key}.msgs", count=500):
            job_id = _message_id(body)
            if job_id is not None:
                rid = redis_id.decode() if isinstance(redis_id, bytes) else str(redis_id)
                found[job_id] = DeadMessage(job_id=job_id, redis_key=key, redis_message_id=rid)
    return found


def _message_id(body: Any) -> str | None:
    try:
        value = json.loads(body)["message_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(value)


def _select(dead: dict[str, DeadMessage], job_ids: Iterable[str]) -> list[DeadMessage]:
    return [dead[job_id] for job_id in job_ids if job_id in dead]


def _remove_from_redis(messages: Collection[DeadMessage], broker: RedisBroker | None = None) -> int:
    if not messages:
        return 0
    broker = broker or get_broker()
    with broker.client.pipeline(transaction=True) as pipe:
        for message in messages:
            pipe.zrem(message.redis_key, message.redis_message_id)
            pipe.hdel(f"{message.redis_key}.msgs", message.redis_message_id)
        replies = pipe.execute()
    return sum(1 for removed in replies[1::2] if removed)


@dataclass
class PurgeResult:
    """Messages removed from Redis, and the jobs they belonged to."""

    removed: int = 0
    job_ids: list[str] = field(default_factory=list)


def dead_letter_purge(
    *,
    organizations: QuerySet[Organization] | None,
    job_ids: Collection[str] | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    via: str = "system",
) -> PurgeResult:
    """Remove dead-lettered messages from Redis; the jobs' history stays in Postgres.

    With ``job_ids``, only those jobs' messages go. With ``organizations``,
    only messages of those organizations' jobs go; ``organizations=None``
    purges every dead letter, including messages with no ledger row. Each job
    whose message was removed gets a ``purged`` event.
    """
    dead = dead_messages_in_redis()
    wanted = list(dead) if job_ids is None else [str(j) for j in job_ids if str(j) in dead]
    if organizations is not None:
        allowed = Job.objects.filter(pk__in=wanted, organization__in=organizations).values_list(
            "id", flat=True
        )
        wanted = [str(job_id) for job_id in allowed]
    removed = _remove_from_redis(_select(dead, wanted))
    jobs = Job.objects.filter(pk__in=wanted).values_list("id", "organization_id")
    actor = user if user is not None and user.is_authenticated else None
    JobEvent.objects.bulk_create(
        [
            JobEvent(
                job_id=job_id,
                organization_id=organization_id,
                kind=JobEventKind.PURGED,
                via=via,
                user=actor,  # type: ignore[misc]
                detail={"reason": "dead letter purged from Redis"},
            )
            for job_id, organization_id in jobs
        ]
    )
    logger.info("Purged %d dead-lettered message(s) from Redis.", removed)
    return PurgeResult(removed=removed, job_ids=wanted)
