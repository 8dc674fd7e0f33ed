"""Dead letters: failed jobs whose retries ran out. List, show, replay and purge them.

The ledger is the source of truth: a dead letter is a ``failed`` job with
``dead_lettered_at`` set, kept for good. Redis keeps its own copy of the
message in the queue's ``.XQ`` set for ``JOBS_DEAD_MESSAGE_TTL_MS``; replaying
or purging removes that copy too, so Redis's ``dead`` count stays honest.

Shared by the ``jobs`` CLI and the admin. ``organization=None`` means every
organization and is for operators only; tenant-facing callers always pass one.

- :func:`dead_letters` — the queryset (filter by organization, type, queue).
- :func:`dead_letter_get` — one dead letter by id, or :class:`~jobs.errors.JobNotFound`.
- :func:`dead_letters_replay` — queue them again with a fresh retry budget (audited ``replayed``).
- :func:`dead_letters_purge` — drop them from the dead-letter list; the failed job row stays
  (audited ``purged``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import CONSUMED_QUEUES, enqueue_messages, get_broker
from jobs.errors import JobNotFound
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.queues import band_queue_names
from jobs.services.submission import job_message
from tenants.models import Organization

logger = logging.getLogger(__name__)

#: Rows handled per transaction by replay and purge.
BATCH_SIZE = 500

#: Called after each batch with (done, total).
Progress = Callable[[int, int], None]


def dead_letters(
    *,
    organization: Organization | None = None,
    job_type: str | None = None,
    queue: str | None = None,
) -> QuerySet[Job]:
    """Dead-lettered jobs, most recently failed first."""
    qs = Job.objects.filter(status=JobStatus.FAILED, dead_lettered_at__isnull=False)
    if organization is not None:
        qs = qs.filter(organization=organization)
    if job_type:
        qs = qs.filter(job_type=job_type)
    if queue:
        qs = qs.filter(queue=queue)
    return qs.order_by("-dead_lettered_at")


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
    """

    done: int
    skipped: int
    job_ids: list[str]


def dead_letters_replay(
    *,
    jobs: QuerySet[Job] | Sequence[Job],
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
    jobs: QuerySet[Job] | Sequence[Job],
    user: User | None = None,
    via: str = "system",
    progress: Progress | None = None,
) -> BulkResult:
    """Drop jobs from the dead-letter list and from Redis; their failed rows stay, audited ``purged``."""
    return _in_batches(_ids_of(jobs), _purge_batch, user=user, via=via, progress=progress)


def _ids_of(jobs: QuerySet[Job] | Sequence[Job]) -> list[str]:
    if isinstance(jobs, QuerySet):
        return [str(pk) for pk in jobs.values_list("pk", flat=True)]
    return [str(job.pk) for job in jobs]


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
    if done:
        remove_redis_dead_letters(job_ids=done)
    return BulkResult(done=len(done), skipped=len(ids) - len(done), job_ids=done)


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
        Job.objects.filter(pk__in=ids).update(
            status=JobStatus.QUEUED,
            cancel_requested_at=None,
            finished_at=None,
            dead_lettered_at=None,
            result=None,
            progress=0,
            progress_message="",
            error_type="",
            error_message="",
            error_traceback="",
            enqueued_at=None,  # until the new message reaches Redis (the outbox relay's cue)
        )
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


def _message_id(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["message_id"])
    except (ValueError, KeyError, TypeError):
        return None
