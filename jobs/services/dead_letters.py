"""Replaying and purging dead letters, in batches, each job audited.

- Replay queues dead letters again with a fresh retry budget (a ``replayed``
  event each), like an explicit retry.
- Purge takes jobs off the dead-letter list (``dead_lettered_at`` cleared;
  the row stays ``failed`` with its error) and deletes Redis's copy of their
  messages (a ``purged`` event each).

Both work in batches of :data:`BATCH_SIZE`: one transaction and one Redis
pipeline per batch, with a progress callback. The admin, the CLI and the API
call these; which dead letters a caller may touch is decided by the reads
that produce the ids (:mod:`jobs.selectors.dead_letters`).

Names: ``dead_letters_*`` act on the given job ids, ``dead_letter_group_*``
on the jobs of one group; all return a :class:`DeadLetterResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from jobs.models import Job, JobEvent, JobEventKind
from jobs.selectors.dead_letters import (
    DeadLetterGroup,
    dead_letter_bands,
    dead_letter_group_job_ids,
    dead_letters,
)
from jobs.services.control import REQUEUED_FIELDS
from jobs.services.dispatch import jobs_send
from jobs.services.fairness import submission_admit
from jobs.services.messages import job_message
from jobs.transport.broker import get_broker
from jobs.transport.queues import dead_messages_remove
from tenants.models import Organization

logger = logging.getLogger(__name__)

#: Rows handled per transaction by replay and purge.
BATCH_SIZE = 500

#: Called after each batch with (done, total).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DeadLetterResult:
    """What a replay or purge did.

    Parameters:
      done: jobs replayed (or purged).
      skipped: jobs that were no longer dead letters when their batch ran.
      job_ids: ids of the jobs done.
      redis_removed: Redis copies of dead-lettered messages deleted.
    """

    done: int
    skipped: int
    job_ids: list[str]
    redis_removed: int = 0


def dead_letters_replay(
    *,
    job_ids: Sequence[str],
    user: User | None = None,
    via: str = "system",
    progress: Progress | None = None,
    enforce_limits: bool = False,
    audit: Mapping[str, Any] | None = None,
) -> DeadLetterResult:
    """Queue these dead letters again with a fresh retry budget; one ``replayed`` event each.

    Ids that are not (or no longer) dead letters are skipped. Each batch is
    one transaction; its messages are sent in one Redis pipeline after it commits.

    With ``enforce_limits`` (a tenant's replay, through the API) the replay
    costs what an explicit retry costs: each dead letter selected counts as one
    submission of its organization against the rate limit and the monthly
    quota, admitted before anything changes (``RateLimited``, ``QuotaExceeded``
    or ``OrganizationInactive`` otherwise, and nothing replayed). ``audit`` is
    added to each ``replayed`` event's detail (the API key that acted).
    """
    ids = list(job_ids)
    if enforce_limits:
        _admit(ids)
    result = _in_batches(ids, _replay_batch, user=user, via=via, progress=progress, audit=audit)
    logger.info("Replayed %d dead letter(s) via %s; skipped %d.", result.done, via, result.skipped)
    return result


def dead_letters_purge(
    *,
    job_ids: Sequence[str],
    user: User | None = None,
    via: str = "system",
    progress: Progress | None = None,
    audit: Mapping[str, Any] | None = None,
) -> DeadLetterResult:
    """Drop these jobs from the dead-letter list and from Redis; their failed rows stay.

    ``audit`` is added to each ``purged`` event's detail (the API key that acted).
    """
    result = _in_batches(
        list(job_ids), _purge_batch, user=user, via=via, progress=progress, audit=audit
    )
    logger.info(
        "Purged %d dead letter(s) via %s; %d message(s) removed from Redis.",
        result.done,
        via,
        result.redis_removed,
    )
    return result


def dead_letter_group_replay(
    *,
    group: DeadLetterGroup,
    organizations: QuerySet[Organization] | None,
    job_ids: Collection[str] | None = None,
    user: User | None = None,
    via: str = "system",
    enforce_limits: bool = False,
    audit: Mapping[str, Any] | None = None,
) -> DeadLetterResult:
    """Replay every job of a group the caller may see, or only ``job_ids`` among them.

    Ids of ``job_ids`` outside the group (or unknown, or another organization's)
    count as skipped. ``enforce_limits`` and ``audit``: see :func:`dead_letters_replay`.
    """
    ids = _group_ids(group, organizations, job_ids)
    result = dead_letters_replay(
        job_ids=ids, user=user, via=via, enforce_limits=enforce_limits, audit=audit
    )
    return _counting_asked(result, ids, job_ids)


def dead_letter_group_purge(
    *,
    group: DeadLetterGroup,
    organizations: QuerySet[Organization] | None,
    job_ids: Collection[str] | None = None,
    user: User | None = None,
    via: str = "system",
    audit: Mapping[str, Any] | None = None,
) -> DeadLetterResult:
    """Purge every job of a group the caller may see, or only ``job_ids`` among them.

    Ids of ``job_ids`` outside the group count as skipped; ``audit``: see
    :func:`dead_letters_purge`.
    """
    ids = _group_ids(group, organizations, job_ids)
    result = dead_letters_purge(job_ids=ids, user=user, via=via, audit=audit)
    return _counting_asked(result, ids, job_ids)


def dead_letters_purge_all(*, user: User | None = None, via: str = "system") -> DeadLetterResult:
    """Purge every dead letter, and empty Redis's dead-letter sets entirely (operators only).

    This also removes dead-lettered messages that never had a ledger row.
    """
    ids = [str(pk) for pk in dead_letters(organizations=None).values_list("pk", flat=True)]
    result = dead_letters_purge(job_ids=ids, user=user, via=via)
    rest = dead_messages_remove(get_broker(), dead_letter_bands(), None)
    return DeadLetterResult(
        done=result.done,
        skipped=result.skipped,
        job_ids=result.job_ids,
        redis_removed=result.redis_removed + rest,
    )


def _group_ids(
    group: DeadLetterGroup,
    organizations: QuerySet[Organization] | None,
    subset: Collection[str] | None,
) -> list[str]:
    ids = dead_letter_group_job_ids(group=group, organizations=organizations)
    if subset is None:
        return ids
    wanted = {str(i) for i in subset}
    return [i for i in ids if i in wanted]


def _counting_asked(
    result: DeadLetterResult, selected: list[str], asked: Collection[str] | None
) -> DeadLetterResult:
    """``result`` with every asked-for id that was not done counted as skipped."""
    if asked is None:
        return result
    return DeadLetterResult(
        done=result.done,
        skipped=len({str(i) for i in asked}) - result.done,
        job_ids=result.job_ids,
        redis_removed=result.redis_removed,
    )


def _admit(ids: list[str]) -> None:
    """Charge each organization one submission per dead letter of it among ``ids``."""
    counts = (
        dead_letters(organizations=None)
        .filter(pk__in=ids, organization__isnull=False)
        .values("organization")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_id = {row["organization"]: row["n"] for row in counts}
    for organization in Organization.objects.filter(pk__in=list(by_id)).order_by("pk"):
        submission_admit(organization=organization, count=by_id[organization.pk])


_Batch = Callable[[list[str], User | None, str, Mapping[str, Any]], list[str]]


def _in_batches(
    ids: list[str],
    batch: _Batch,
    *,
    user: User | None,
    via: str,
    progress: Progress | None,
    audit: Mapping[str, Any] | None = None,
) -> DeadLetterResult:
    done: list[str] = []
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        done.extend(batch(chunk, user, via, audit or {}))
        if progress is not None:
            progress(min(start + BATCH_SIZE, len(ids)), len(ids))
    removed = dead_messages_remove(get_broker(), dead_letter_bands(), done) if done else 0
    return DeadLetterResult(
        done=len(done), skipped=len(ids) - len(done), job_ids=done, redis_removed=removed
    )


def _claim(chunk: list[str]) -> list[str]:
    return [
        str(pk)
        for pk in dead_letters(organizations=None)
        .filter(pk__in=chunk)
        .select_for_update()
        .order_by()
        .values_list("pk", flat=True)
    ]


def _replay_batch(
    chunk: list[str], user: User | None, via: str, audit: Mapping[str, Any]
) -> list[str]:
    with transaction.atomic():
        ids = _claim(chunk)
        if not ids:
            return []
        Job.objects.filter(pk__in=ids).update(**REQUEUED_FIELDS)
        jobs = list(Job.objects.filter(pk__in=ids))
        _audit(jobs, JobEventKind.REPLAYED, user=user, via=via, detail=lambda job: dict(audit))
        messages = [(job_message(job), None) for job in jobs]
        transaction.on_commit(lambda: jobs_send(messages))
    for job in jobs:
        logger.debug(
            "Dead letter %s replayed via %s.",
            job.pk,
            via,
            extra={"job_id": str(job.pk), "organization_id": job.organization_id},
        )
    return ids


def _purge_batch(
    chunk: list[str], user: User | None, via: str, audit: Mapping[str, Any]
) -> list[str]:
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
                **audit,
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
