"""Submitting jobs: validate, admit, write the ledger row, send the message on commit.

The readable path of a submission, for one job or many:

1. :func:`_prepare` validates the job type, its options and its payload
   (the type's serializer) and builds the Dramatiq message;
2. fairness (rate limit, monthly quota, active organization; a PING for
   system submissions, which proves Redis answers) is asked in Redis while
3. the rows and their outbox row are written in one statement
   (:func:`jobs.services.submission_sql.jobs_insert`); a refusal deletes
   them again (:func:`_insert_admitted`);
4. the message is sent when the caller's transaction commits, and the
   outbox row is deleted once Redis has it, by a background thread (a crash
   in between leaves the row, and the recovery loop sends the job).

How the INSERT and the returned ``Job`` instances are made fast is fenced in
:mod:`jobs.services.submission_sql`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from dramatiq import Message
from rest_framework.serializers import Serializer

from jobs.errors import InvalidPayload, InvalidSubmission
from jobs.models import Job
from jobs.payloads import validate_payload, validate_payload_json
from jobs.queues import (
    DEFAULT_PRIORITY,
    redis_queue_name,
)
from jobs.registry import VALIDATED_OPTION, get_job_type
from jobs.services.dispatch import jobs_send
from jobs.services.fairness import submission_admit_start
from jobs.services.outbox import job_outbox_forget
from jobs.services.submission_options import (
    MAX_DELAY,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    check_options,
)
from jobs.services.submission_sql import (
    PreparedJob,
    gc_paused,
    job_instance,
    jobs_insert,
    jobs_insert_undo,
)
from jobs.transport.ids import uuid7s
from tenants.models import Organization

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRequest:
    """One job of a submission.

    Parameters:
      job_type: a registered job type name.
      payload: the job's keyword arguments, validated by the type's serializer.
      priority: 0-10, higher is more urgent.
      idempotency_key: a second submission with the same key returns the first job.
      delay: how long to wait before the job may run (0 to 7 days).
      max_retries: overrides the job type's retry budget.
      queue: overrides the job type's home queue (one of the consumed queues).
    """

    job_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    idempotency_key: str | None = None
    delay: timedelta | None = None
    max_retries: int | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Submission:
    """What a submission returns: the job, and whether this call created it."""

    job: Job
    created: bool


def job_submit(
    *,
    job_type: str,
    payload: Mapping[str, Any] | None = None,
    organization: Organization | None = None,
    priority: int = DEFAULT_PRIORITY,
    idempotency_key: str | None = None,
    delay: timedelta | None = None,
    max_retries: int | None = None,
    queue: str | None = None,
    send_on_commit: bool = True,
) -> Submission:
    """Submit one job. The message is sent when the caller's transaction commits.

    A rolled-back transaction sends nothing. Outside a transaction the message
    is sent at once. If Redis does not answer, ``BrokerUnavailable`` is raised
    and nothing is written; if it fails after the row is written, the row
    stays ``queued`` and the outbox relay (the recovery loop) sends it. With
    an ``idempotency_key`` already used in the same organization, the existing job is returned and nothing is sent.
    ``send_on_commit=False`` sends at once even inside a transaction: the
    worker then waits for the row's commit, and runs the job even if the
    transaction rolls back (``django.tasks`` backends offer this as an option).
    """
    request = JobRequest(
        job_type=job_type,
        payload=payload if payload is not None else {},
        priority=priority,
        idempotency_key=idempotency_key,
        delay=delay,
        max_retries=max_retries,
        queue=queue,
    )
    prepared = _prepare(request, organization=organization, now=timezone.now(), job_id=uuid7s(1)[0])
    if request.idempotency_key is not None:
        existing = _existing_by_key(organization, [request.idempotency_key])
        if request.idempotency_key in existing:
            return Submission(job=existing[request.idempotency_key], created=False)
        try:
            with transaction.atomic():
                outbox_id = _insert_admitted([prepared], organization=organization)
        except IntegrityError:
            # A concurrent submission with the same key won the race.
            existing = _existing_by_key(organization, [request.idempotency_key])
            if request.idempotency_key in existing:
                return Submission(job=existing[request.idempotency_key], created=False)
            raise
    else:
        outbox_id = _insert_admitted([prepared], organization=organization)
    if send_on_commit:
        _send_on_commit([prepared], organization=organization, outbox_id=outbox_id)
    else:
        _log_submitted([prepared], organization=organization)
        _send([(prepared.message, prepared.delay_ms)], outbox_id)
    return Submission(job=job_instance(prepared, organization=organization), created=True)


def job_submit_many(
    *, requests: Sequence[JobRequest], organization: Organization | None = None
) -> list[Submission]:
    """Submit many jobs with one INSERT and one Redis pipeline.

    Every request is validated before anything is written; the first invalid
    one raises with ``index`` set on the error, and nothing is created.
    """
    with gc_paused():
        return _submit_many(requests=requests, organization=organization)


def _submit_many(
    *, requests: Sequence[JobRequest], organization: Organization | None
) -> list[Submission]:
    prepared: list[PreparedJob] = []
    serializers: dict[Any, Serializer[Any]] = {}
    now = timezone.now()
    job_ids = uuid7s(len(requests))
    for index, request in enumerate(requests):
        try:
            prepared.append(
                _prepare(
                    request,
                    organization=organization,
                    serializers=serializers,
                    now=now,
                    job_id=job_ids[index],
                )
            )
        except (InvalidPayload, InvalidSubmission) as exc:
            exc.index = index
            raise
    keys = [p.idempotency_key for p in prepared if p.idempotency_key is not None]
    if len(keys) != len(set(keys)):
        raise InvalidSubmission(
            "Two jobs of one batch share an idempotency key; give each job its own key.",
            field="idempotency_key",
        )
    existing = _existing_by_key(organization, keys) if keys else {}
    fresh = [p for p in prepared if p.idempotency_key not in existing] if existing else prepared
    try:
        with transaction.atomic():
            outbox_id = _insert_admitted(fresh, organization=organization)
    except IntegrityError:
        if not keys:
            raise
        # A concurrent submission took some of the keys: fall back to one at a time.
        return [
            job_submit(
                job_type=r.job_type,
                payload=r.payload,
                organization=organization,
                priority=r.priority,
                idempotency_key=r.idempotency_key,
                delay=r.delay,
                max_retries=r.max_retries,
                queue=r.queue,
            )
            for r in requests
        ]
    _send_on_commit(fresh, organization=organization, outbox_id=outbox_id)
    alias = connection.alias  # a thread-local lookup per access: read it once
    return [
        Submission(job=existing[key], created=False)
        if (key := p.idempotency_key) is not None and key in existing
        else Submission(job=job_instance(p, organization=organization, alias=alias), created=True)
        for p in prepared
    ]


def _prepare(
    request: JobRequest,
    *,
    organization: Organization | None,
    now: datetime,
    job_id: tuple[Any, str],
    serializers: dict[Any, Serializer[Any]] | None = None,
) -> PreparedJob:
    jt = get_job_type(request.job_type)
    queue = check_options(
        priority=request.priority,
        idempotency_key=request.idempotency_key,
        delay=request.delay,
        max_retries=request.max_retries,
        queue=request.queue,
        home_queue=jt.queue,
    )
    priority, key, delay = request.priority, request.idempotency_key, request.delay
    payload, payload_json = validate_payload_json(jt, request.payload, serializers=serializers)

    max_retries = (
        request.max_retries if request.max_retries is not None else jt.effective_max_retries()
    )
    options: dict[str, Any] = {"max_retries": max_retries}
    if organization is not None:
        options["organization_id"] = organization.pk
    stamp = jt.payload_stamp(payload, canonical_json=payload_json)
    if stamp is not None:  # the worker need not validate this payload again
        options[VALIDATED_OPTION] = stamp
    message: Message[Any] = Message(
        queue_name=_redis_queue_name(queue, priority),
        actor_name=jt.name,
        args=(),
        kwargs=dict(payload),
        options=options,
        message_id=job_id[1],
        message_timestamp=int(now.timestamp() * 1000),
    )
    return PreparedJob(
        id=job_id[0],
        id_text=job_id[1],
        job_type=jt.name,
        queue=queue,
        priority=priority,
        payload=payload,
        payload_json=payload_json,
        max_retries=max_retries,
        idempotency_key=key,
        created_at=now,
        scheduled_for=now + delay if delay else None,
        message=message,
        delay_ms=int(delay.total_seconds() * 1000) if delay else None,
    )


#: The Redis list of a (queue, priority): a pure function, asked once per job.
_redis_queue_name = functools.lru_cache(maxsize=1024)(redis_queue_name)


def _insert_admitted(
    prepared: Sequence[PreparedJob], *, organization: Organization | None
) -> int | None:
    """Write the rows while fairness decides, and undo them if it refuses.

    The admission's Redis call (the rate and quota script; a PING for system
    submissions, which proves Redis answers) is sent first and read after the
    INSERT, so the two round trips overlap. A refusal, or Redis failing to
    answer, deletes the rows again on the same connection: inside the caller's
    transaction nothing is left; outside one the rows were committed for that
    moment, but nothing sends them (the relay waits ``JOBS_OUTBOX_GRACE_MS``).
    """
    if not prepared:
        return None
    ticket = submission_admit_start(organization=organization, count=len(prepared))
    try:
        outbox_id = jobs_insert(prepared, organization=organization)
    except BaseException:
        ticket.drop()
        raise
    try:
        ticket.finish(own_rows=len(prepared))
    except BaseException:
        jobs_insert_undo(prepared, outbox_id=outbox_id)
        raise
    return outbox_id


def _existing_by_key(organization: Organization | None, keys: Sequence[str]) -> dict[str, Job]:
    qs = Job.objects.filter(idempotency_key__in=keys)
    qs = (
        qs.filter(organization=organization)
        if organization is not None
        else qs.filter(organization__isnull=True)
    )
    return {job.idempotency_key: job for job in qs if job.idempotency_key is not None}


def _log_submitted(prepared: Sequence[PreparedJob], *, organization: Organization | None) -> None:
    """One line per job; a batch gets one line naming every id, and per-job lines at DEBUG.

    A thousand lines per bulk call (each redacted and formatted) would double
    its CPU, hence one line for a batch.
    """
    organization_id = organization.pk if organization is not None else None
    if len(prepared) > 1 and logger.isEnabledFor(logging.INFO):
        logger.info(
            # No colon or equals sign in the line: log redaction then skips its scan
            # for `key: value` secrets (the ids cannot hold one).
            "Submitted %d jobs in one batch (%s), ids %s.",
            len(prepared),
            ", ".join(sorted({f"{p.job_type} on {p.message.queue_name}" for p in prepared})),
            " ".join(p.id_text for p in prepared),
            extra={"organization_id": organization_id},
        )
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not logger.isEnabledFor(level):
        return
    for p in prepared:
        # The job id as a field, so one job's lines are found from submission to its last attempt.
        logger.log(
            level,
            "Job %s submitted (%s, queue %s, priority %d).",
            p.id_text,
            p.job_type,
            p.message.queue_name,
            p.priority,
            extra={"job_id": p.id_text, "organization_id": organization_id, "actor": p.job_type},
        )


def _send_on_commit(
    prepared: Sequence[PreparedJob], *, organization: Organization | None, outbox_id: int | None
) -> None:
    if not prepared:
        return
    _log_submitted(prepared, organization=organization)
    items = [(p.message, p.delay_ms) for p in prepared]
    transaction.on_commit(lambda: _send(items, outbox_id))


def _send(items: Sequence[tuple[Message[Any], int | None]], outbox_id: int | None) -> None:
    """Send a submission's messages; once Redis has them, their outbox row is deleted.

    The DELETE is the process's outbox forgetter's, off the caller's path
    (:mod:`jobs.services.outbox`). If Redis fails, the row stays and the
    recovery loop sends the jobs after ``JOBS_OUTBOX_GRACE_MS``; if only the
    DELETE fails, the loop sends them again, and the ledger skips the duplicates.
    """
    if jobs_send(items, mark_enqueued=False) and outbox_id is not None:
        job_outbox_forget(outbox_id=outbox_id)


__all__ = [
    "MAX_DELAY",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "JobRequest",
    "Submission",
    "job_submit",
    "job_submit_many",
    "validate_payload",
]
