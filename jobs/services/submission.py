"""Submitting jobs: validate, write the ledger row, send the message on commit."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from dramatiq import Message

from jobs.broker import CONSUMED_QUEUES, enqueue_messages
from jobs.conf import jobs_settings
from jobs.errors import InvalidPayload, InvalidSubmission, PayloadTooLarge
from jobs.models import Job
from jobs.queues import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, redis_queue_name
from jobs.registry import JobType, get_job_type
from jobs.services.fairness import submission_admit
from tenants.models import Organization

logger = logging.getLogger(__name__)

MAX_DELAY = timedelta(days=7)
MAX_IDEMPOTENCY_KEY_LENGTH = 200


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


@dataclass(frozen=True)
class _Prepared:
    job: Job
    message: Message[Any]
    delay_ms: int | None


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
    is sent at once. With an ``idempotency_key`` already used in the same
    organization, the existing job is returned and nothing is sent.
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
    prepared = _prepare(request, organization=organization)
    if request.idempotency_key is not None:
        existing = _existing_by_key(organization, [request.idempotency_key])
        if request.idempotency_key in existing:
            return Submission(job=existing[request.idempotency_key], created=False)
        submission_admit(organization=organization, count=1)
        try:
            with transaction.atomic():
                prepared.job.save(force_insert=True)
        except IntegrityError:
            # A concurrent submission with the same key won the race.
            existing = _existing_by_key(organization, [request.idempotency_key])
            if request.idempotency_key in existing:
                return Submission(job=existing[request.idempotency_key], created=False)
            raise
    else:
        submission_admit(organization=organization, count=1)
        prepared.job.save(force_insert=True)
    if send_on_commit:
        _send_on_commit([prepared])
    else:
        enqueue_messages([(prepared.message, prepared.delay_ms)])
    return Submission(job=prepared.job, created=True)


def job_submit_many(
    *, requests: Sequence[JobRequest], organization: Organization | None = None
) -> list[Submission]:
    """Submit many jobs with one INSERT and one Redis pipeline.

    Every request is validated before anything is written; the first invalid
    one raises with ``index`` set on the error, and nothing is created.
    """
    prepared: list[_Prepared] = []
    for index, request in enumerate(requests):
        try:
            prepared.append(_prepare(request, organization=organization))
        except (InvalidPayload, InvalidSubmission) as exc:
            exc.index = index
            raise
    keys = [p.job.idempotency_key for p in prepared if p.job.idempotency_key is not None]
    if len(keys) != len(set(keys)):
        raise InvalidSubmission(
            "Two jobs of one batch share an idempotency key; give each job its own key.",
            field="idempotency_key",
        )
    existing = _existing_by_key(organization, keys) if keys else {}
    fresh = [p for p in prepared if p.job.idempotency_key not in existing]
    submission_admit(organization=organization, count=len(fresh))
    try:
        with transaction.atomic():
            Job.objects.bulk_create([p.job for p in fresh])
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
    _send_on_commit(fresh)
    return [
        Submission(job=existing[key], created=False)
        if (key := p.job.idempotency_key) is not None and key in existing
        else Submission(job=p.job, created=True)
        for p in prepared
    ]


def job_message(job: Job) -> Message[Any]:
    """Rebuild the Dramatiq message of a ledger row (for retries, replays and the outbox relay)."""
    options: dict[str, Any] = {"max_retries": job.max_retries}
    if job.organization_id is not None:
        options["organization_id"] = job.organization_id
    return Message(
        queue_name=redis_queue_name(job.queue, job.priority),
        actor_name=job.job_type,
        args=(),
        kwargs=dict(job.payload or {}),
        options=options,
        message_id=str(job.id),
        message_timestamp=int(time.time() * 1000),
    )


def validate_payload(jt: JobType, payload: Any) -> dict[str, Any]:
    """Check a payload's shape, size and fields; return it normalised by the type's serializer."""
    if not isinstance(payload, Mapping):
        raise InvalidPayload(
            f"The payload must be a JSON object, not {type(payload).__name__}.",
            errors={"payload": ["Expected a JSON object."]},
        )
    try:
        encoded = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"The payload cannot be encoded as JSON ({exc}). "
            "Send only objects, lists, strings, numbers, booleans and null.",
            errors={"payload": [f"Not JSON-serialisable: {exc}"]},
        ) from None
    _check_payload_size(encoded)
    if jt.payload_serializer is None:
        return dict(payload)
    serializer = jt.payload_serializer(data=dict(payload))
    if not serializer.is_valid():
        fields = ", ".join(sorted(serializer.errors))
        raise InvalidPayload(
            f"The payload of {jt.name!r} is invalid in: {fields}.", errors=serializer.errors
        )
    normalised = dict(serializer.data)
    _check_payload_size(json.dumps(normalised, separators=(",", ":")))
    return normalised


def _check_payload_size(encoded: str) -> None:
    limit = jobs_settings.max_payload_bytes
    size = len(encoded.encode())
    if size > limit:
        raise PayloadTooLarge(
            f"The payload is {size} bytes, over JOBS_MAX_PAYLOAD_BYTES={limit}. "
            "Pass a reference (an id or a URL) to large data instead of the data itself.",
            errors={"payload": [f"Payload is {size} bytes; the limit is {limit}."]},
        )


def _prepare(request: JobRequest, *, organization: Organization | None) -> _Prepared:
    jt = get_job_type(request.job_type)
    priority = request.priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidSubmission(
            f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
            f"not {priority!r}.",
            field="priority",
        )
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidSubmission(
            f"priority {priority!r} is out of range; use {MIN_PRIORITY} (least urgent) "
            f"to {MAX_PRIORITY} (most urgent).",
            field="priority",
        )
    key = request.idempotency_key
    if key is not None and (
        not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH
    ):
        raise InvalidSubmission(
            f"idempotency_key must be a non-empty string of at most "
            f"{MAX_IDEMPOTENCY_KEY_LENGTH} characters, not {key!r}.",
            field="idempotency_key",
        )
    delay = request.delay
    if delay is not None and not timedelta(0) <= delay <= MAX_DELAY:
        raise InvalidSubmission(
            f"delay {delay} is out of range; use 0 seconds to 7 days.", field="delay_seconds"
        )
    if request.max_retries is not None and not 0 <= request.max_retries <= 100:
        raise InvalidSubmission(
            f"max_retries {request.max_retries!r} is out of range; use 0 to 100.",
            field="max_retries",
        )
    queue = jt.queue if request.queue is None else request.queue
    if request.queue is not None and queue not in CONSUMED_QUEUES:
        raise InvalidSubmission(
            f"queue {queue!r} is not a queue workers consume; use one of "
            f"{', '.join(CONSUMED_QUEUES)}.",
            field="queue",
        )
    payload = validate_payload(jt, request.payload)

    now = timezone.now()
    delay_ms = int(delay.total_seconds() * 1000) if delay else None
    job = Job(
        organization=organization,
        job_type=jt.name,
        queue=queue,
        priority=priority,
        payload=payload,
        max_retries=(
            request.max_retries if request.max_retries is not None else jt.effective_max_retries()
        ),
        idempotency_key=key,
        created_at=now,
        scheduled_for=now + delay if delay else None,
    )
    return _Prepared(job=job, message=job_message(job), delay_ms=delay_ms)


def _existing_by_key(organization: Organization | None, keys: Sequence[str]) -> dict[str, Job]:
    qs = Job.objects.filter(idempotency_key__in=keys)
    qs = (
        qs.filter(organization=organization)
        if organization is not None
        else qs.filter(organization__isnull=True)
    )
    return {job.idempotency_key: job for job in qs if job.idempotency_key is not None}


def _send_on_commit(prepared: Sequence[_Prepared]) -> None:
    if not prepared:
        return
    for p in prepared:
        # The job id as a field, so one job's lines are found from submission to its last attempt.
        logger.info(
            "Job %s submitted (%s, queue %s, priority %d).",
            p.job.pk,
            p.job.job_type,
            p.message.queue_name,
            p.job.priority,
            extra={
                "job_id": str(p.job.pk),
                "organization_id": p.job.organization_id,
                "actor": p.job.job_type,
            },
        )
    items = [(p.message, p.delay_ms) for p in prepared]
    transaction.on_commit(lambda: enqueue_messages(items))
