"""Dead letters: failed jobs whose retries ran out, grouped, listed, replayed and purged.

The ledger is the history: a dead letter is a ``failed`` job with
``dead_lettered_at`` set, and its row (payload, error, attempts) is kept for
good, long after Dramatiq's dead-letter TTL drops the message from Redis.
Redis keeps its own copy in the queue band's ``.XQ`` sorted set plus
``.XQ.msgs`` hash (see ``dramatiq/brokers/redis/dispatch.lua``) for
``JOBS_DEAD_MESSAGE_TTL_MS``.

- Replay queues jobs again with a fresh retry budget (a ``replayed`` event each).
- Purge takes jobs off the dead-letter list (``dead_lettered_at`` cleared; the
  row stays ``failed`` with its error) and deletes Redis's copy (a ``purged`` event each).

Both work in batches of :data:`BATCH_SIZE`: one transaction and one Redis
pipeline per batch, with a progress callback. The admin, the CLI and the API
share these functions. Reads and writes take the organizations the caller may
see; ``None`` means every job, system jobs included (superusers and the CLI).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import Left
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import CONSUMED_QUEUES, enqueue_messages, get_broker
from jobs.errors import JobNotFound
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.queues import band_queue_names
from jobs.services.control import REQUEUED_FIELDS
from jobs.services.submission import job_message
from tenants.models import Organization

logger = logging.getLogger(__name__)

#: Rows handled per transaction by replay and purge.
BATCH_SIZE = 500

#: Called after each batch with (done, total).
Progress = Callable[[int, int], None]

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


def dead_letter_groups(
    *, organizations: QuerySet[Organization] | None, count_in_redis: bool = False
) -> list[DeadLetterGroup]:
    """Failed jobs grouped by (type, error type, normalised message), largest group first."""
    rows = (
        dead_letters(organizations=organizations)
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
class BulkResult:
    """What a replay or purge did.

    Parameters:
      done: jobs replayed (or purged).
      skipped: jobs that were no longer dead letters when their batch ran (replayed meanwhile).
      job_ids: ids of the jobs done.
      redis_removed: Redis copies of their messages deleted.
    """

    done: int
    skipped: int
    job_ids: list[str]
    redis_removed: int = 0


def dead_letters_replay(
    *,
    jobs: QuerySet[Job] | Sequence[Job] | Sequence[str],
    user: User | None = None,
    via: str = "system",
    progress: Progress | None = None,
) -> BulkResult:
    """Queue dead letters again with a fresh retry budget; one ``replayed`` event each.

    Works in batches of :data:`BATCH_SIZE`: each batch is one transaction, and
    its messages are sent in one Redis pipeline after it commits.
    """
    return _in_batches(_ids_of(jobs), _replay_batch, user=user, via=via, progress=progress)


def dead_letters_purge(
    *,
    jobs: QuerySet[Job] | Sequence[Job] | Sequence[str],
    user: User | None = None,
    via: str = "system",
    progress: Progress | None = None,
) -> BulkResult:
    """Drop jobs from the dead-letter list and from Redis; their failed rows stay, audited ``purged``."""
    return _in_batches(_ids_of(jobs), _purge_batch, user=user, via=via, progress=progress)


def _ids_of(jobs: QuerySet[Job] | Sequence[Job] | Sequence[str]) -> list[str]:
    if isinstance(jobs, QuerySet):
        return [str(pk) for pk in jobs.values_list("pk", flat=True)]
    return [item if isinstance(item, str) else str(item.pk) for item in jobs]


def _in_batches(
    ids: list[str],
    batch: Callable[[list[str], User | None, str], list[str]],
    *,
    user: User | None,
    via: str,
    progress: Progress | None,
) -> BulkResult:
    done: list[str] = []
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        done.extend(batch(chunk, user, via))
        if progress is not None:
            progress(min(start + BATCH_SIZE, len(ids)), len(ids))
    removed = remove_redis_dead_letters(job_ids=done) if done else 0
    return BulkResult(
        done=len(done), skipped=len(ids) - len(done), job_ids=done, redis_removed=removed
    )


def _claim(chunk: list[str]) -> list[str]:
    return [
        str(pk)
        for pk in dead_letters()
        .filter(pk__in=chunk)
        .select_for_update()
        .order_by()
        .values_list("pk", flat=True)
    ]


def _replay_batch(chunk: list[str], user: User | None, via: str) -> list[str]:
    with transaction.atomic():
        ids = _claim(chunk)
        if not ids:
            return []
        Job.objects.filter(pk__in=ids).update(**REQUEUED_FIELDS)
        jobs = list(Job.objects.filter(pk__in=ids))
        _audit(jobs, JobEventKind.REPLAYED, user=user, via=via)
        messages = [(job_message(job), None) for job in jobs]
        transaction.on_commit(lambda: enqueue_messages(messages))
    logger.info("Replayed %d dead letter(s) via %s.", len(jobs), via)
    for job in jobs:
        logger.debug(
            "Dead letter %s replayed via %s.",
            job.pk,
            via,
            extra={"job_id": str(job.pk), "organization_id": job.organization_id},
        )
    return ids


def _purge_batch(chunk: list[str], user: User | None, via: str) -> list[str]:
    with transaction.atomic():
        ids = _claim(chunk)
        if not ids:
            return []
        jobs = list(Job.objects.filter(pk__in=ids))
        Job.objects.filter(pk__in=ids).update(dead_lettered_at=None)
        _audit(
            jobs,
            JobEventKind.PURGED,
            user=user,
            via=via,
            detail=lambda job: {
                "from": "dead_letters",
                "dead_lettered_at": job.dead_lettered_at.isoformat()
                if job.dead_lettered_at
                else None,
            },
        )
    return ids


def _audit(
    jobs: Iterable[Job],
    kind: JobEventKind,
    *,
    user: User | None,
    via: str,
    detail: Callable[[Job], dict[str, Any]] | None = None,
) -> None:
    now = timezone.now()
    JobEvent.objects.bulk_create(
        [
            JobEvent(
                job=job,
                organization_id=job.organization_id,
                kind=kind,
                via=via,
                user=user if user is not None and user.is_authenticated else None,
                detail=detail(job) if detail else {},
                created_at=now,
            )
            for job in jobs
        ]
    )


@dataclass
class ReplayResult:
    """What a group replay did: the jobs queued again, and those skipped with the reason."""

    replayed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def dead_letter_replay(
    *,
    group: DeadLetterGroup,
    organizations: QuerySet[Organization] | None,
    user: User | None = None,
    via: str = "system",
) -> ReplayResult:
    """Replay every job of a group (see :func:`dead_letters_replay`)."""
    ids = dead_letter_group_job_ids(group=group, organizations=organizations)
    done = dead_letters_replay(jobs=ids, user=user, via=via)
    replayed = set(done.job_ids)
    result = ReplayResult(
        replayed=done.job_ids,
        skipped=[(i, "no longer a dead letter") for i in ids if i not in replayed],
    )
    logger.info(
        "Replayed %d job(s) of dead-letter group %s (%s, %s); skipped %d.",
        len(result.replayed),
        group.key,
        group.job_type,
        group.error_type,
        len(result.skipped),
    )
    return result


@dataclass
class PurgeResult:
    """Jobs taken off the dead-letter list, and Redis messages deleted."""

    removed: int = 0
    job_ids: list[str] = field(default_factory=list)


def dead_letter_purge(
    *,
    organizations: QuerySet[Organization] | None,
    job_ids: Collection[str] | None = None,
    user: User | None = None,
    via: str = "system",
) -> PurgeResult:
    """Purge the dead letters the caller may see (only ``job_ids`` when given).

    With ``organizations=None`` and no ``job_ids``, Redis's dead-letter sets are
    emptied entirely, including messages that never had a ledger row.
    """
    qs = dead_letters(organizations=organizations)
    if job_ids is not None:
        qs = qs.filter(pk__in=list(job_ids))
    done = dead_letters_purge(jobs=qs, user=user, via=via)
    removed = done.redis_removed
    if organizations is None and job_ids is None:
        removed += remove_redis_dead_letters(job_ids=None)
    logger.info("Purged %d dead letter(s); %d message(s) removed from Redis.", done.done, removed)
    return PurgeResult(removed=removed, job_ids=done.job_ids)


def remove_redis_dead_letters(
    *, job_ids: Iterable[str] | None = None, broker: RedisBroker | None = None
) -> int:
    """Delete Redis's copies of dead-lettered messages (all of them when ``job_ids`` is None).

    Redis keys dead letters by a per-send id, so the job ids are matched by
    decoding the stored messages. Returns how many messages were deleted.
    """
    broker = broker or get_broker()
    wanted = None if job_ids is None else {str(i) for i in job_ids}
    ns = broker.namespace
    removed = 0
    for queue in CONSUMED_QUEUES:
        for band in band_queue_names(queue):
            xq, xq_msgs = f"{ns}:{band}.XQ", f"{ns}:{band}.XQ.msgs"
            if wanted is None:
                with broker.client.pipeline(transaction=True) as pipe:
                    pipe.hlen(xq_msgs)
                    pipe.delete(xq, xq_msgs)
                    count, _ = pipe.execute()
                removed += int(count)
                continue
            matched = [
                redis_id
                for redis_id, body in broker.client.hscan_iter(xq_msgs, count=1_000)
                if _message_id(body) in wanted
            ]
            if matched:
                with broker.client.pipeline(transaction=True) as pipe:
                    pipe.zrem(xq, *matched)
                    pipe.hdel(xq_msgs, *matched)
                    pipe.execute()
                removed += len(matched)
    return removed


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
    for band in [b for q in CONSUMED_QUEUES for b in band_queue_names(q)]:
        key = f"{broker.namespace}:{band}.XQ"
        for redis_id, body in broker.client.hscan_iter(f"{key}.msgs", count=500):
            job_id = _message_id(body)
            if job_id is not None:
                rid = redis_id.decode() if isinstance(redis_id, bytes) else str(redis_id)
                found[job_id] = DeadMessage(job_id=job_id, redis_key=key, redis_message_id=rid)
    return found


def _message_id(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["message_id"])
    except (ValueError, KeyError, TypeError):
        return None
