"""Submitting jobs: validate, write the ledger row, send the message on commit."""

from __future__ import annotations

import functools
import gc
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.utils import timezone
from dramatiq import Message
from rest_framework.serializers import Serializer

from jobs.broker import CONSUMED_QUEUES, enqueue_messages, ensure_broker_available
from jobs.conf import jobs_settings
from jobs.errors import InvalidPayload, InvalidSubmission, PayloadTooLarge
from jobs.ids import uuid4s
from jobs.models import Job, JobOutbox
from jobs.payload_limits import payload_problem, text_problem
from jobs.payloads import payload_fast_path
from jobs.queues import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, redis_queue_name
from jobs.registry import VALIDATED_OPTION, JobType, get_job_type
from jobs.services.fairness import submission_admit
from jobs.services.outbox import job_outbox_delete
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


@dataclass(slots=True)
class _Prepared:
    """A validated job, ready to insert: its row's variable columns and its message."""

    id: uuid.UUID
    id_text: str
    job_type: str
    queue: str
    priority: int
    payload: dict[str, Any]
    payload_json: str
    max_retries: int
    idempotency_key: str | None
    created_at: datetime
    scheduled_for: datetime | None
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
    is sent at once. If Redis does not answer, ``BrokerUnavailable`` is raised
    and nothing is written; if it fails after the row is written, the row
    stays ``queued`` and the outbox relay (``jobs.recovery``) sends it. With
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
    prepared = _prepare(request, organization=organization, now=timezone.now(), job_id=uuid4s(1)[0])
    if request.idempotency_key is not None:
        existing = _existing_by_key(organization, [request.idempotency_key])
        if request.idempotency_key in existing:
            return Submission(job=existing[request.idempotency_key], created=False)
        _admit(organization=organization, count=1)
        try:
            with transaction.atomic():
                outbox_id = _insert([prepared], organization=organization)
        except IntegrityError:
            # A concurrent submission with the same key won the race.
            existing = _existing_by_key(organization, [request.idempotency_key])
            if request.idempotency_key in existing:
                return Submission(job=existing[request.idempotency_key], created=False)
            raise
    else:
        _admit(organization=organization, count=1)
        outbox_id = _insert([prepared], organization=organization)
    if send_on_commit:
        _send_on_commit([prepared], organization=organization, outbox_id=outbox_id)
    else:
        _log_submitted([prepared], organization=organization)
        _send([(prepared.message, prepared.delay_ms)], outbox_id)
    return Submission(job=_job(prepared, organization=organization), created=True)


def job_submit_many(
    *, requests: Sequence[JobRequest], organization: Organization | None = None
) -> list[Submission]:
    """Submit many jobs with one INSERT and one Redis pipeline.

    Every request is validated before anything is written; the first invalid
    one raises with ``index`` set on the error, and nothing is created.
    """
    with _gc_paused():
        return _submit_many(requests=requests, organization=organization)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector during a bulk submission.

    A call allocates some fifteen small containers per job, and the thousand
    jobs it holds survive into the oldest generation, which then triggered
    full collections of the whole process's heap: 11-16 ms of a 1,000-job
    call's 45-65 ms of CPU. The call's own objects form no cycles (reference
    counting frees them); a cycle made meanwhile, such as an exception's
    traceback, waits for the first collection after the call. The collector
    is enabled again on the way out, unless it was disabled before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _submit_many(
    *, requests: Sequence[JobRequest], organization: Organization | None
) -> list[Submission]:
    prepared: list[_Prepared] = []
    serializers: dict[Any, Serializer[Any]] = {}
    now = timezone.now()
    job_ids = uuid4s(len(requests))
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
    if fresh:
        _admit(organization=organization, count=len(fresh))
    try:
        with transaction.atomic():
            outbox_id = _insert(fresh, organization=organization)
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
        else Submission(job=_job(p, organization=organization, alias=alias), created=True)
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


def validate_payload(
    jt: JobType, payload: Any, *, serializers: dict[Any, Serializer[Any]] | None = None
) -> dict[str, Any]:
    """Check a payload's shape, size and fields; return it normalised by the type's serializer.

    ``serializers`` lets one call validate many payloads with one serializer
    instance per job type (see :func:`_payload_serializer`).
    """
    return _validate(jt, payload, serializers)[0]


#: One encoder each, built once: ``json.dumps`` with options builds a new encoder per call.
_encode_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
#: Keys sorted: the text a payload's stamp covers (JobType.payload_stamp), encoded once.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _validate(
    jt: JobType, payload: Any, serializers: dict[Any, Serializer[Any]] | None
) -> tuple[dict[str, Any], str]:
    """:func:`validate_payload`, also returning the normalised payload as compact JSON."""
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise InvalidPayload(
            f"The payload must be a JSON object, not {type(payload).__name__}.",
            errors={"payload": ["Expected a JSON object."]},
        )
    # Before anything that recurses (encoding, the serializer): a deep payload is refused here.
    problem = payload_problem(payload, max_depth=jobs_settings.max_payload_depth)
    if problem is not None:
        path, message = problem
        raise InvalidPayload(
            f"The payload is invalid at {'payload.' + path if path else 'payload'}: {message}",
            errors={path or "payload": [message]},
        )
    try:
        encoded = _encode_strict(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"The payload cannot be encoded as JSON ({exc}). "
            "Send only objects, lists, strings, numbers, booleans and null.",
            errors={"payload": [f"Not JSON-serialisable: {exc}"]},
        ) from None
    limit = jobs_settings.max_payload_bytes
    _check_payload_size(encoded, limit)
    if jt.payload_serializer is None:
        return dict(payload), encoded
    fast_path = payload_fast_path(jt.payload_serializer)
    normalised = fast_path(payload) if fast_path is not None else None
    if normalised is None:
        serializer = _payload_serializer(jt, dict(payload), serializers)
        if not serializer.is_valid():
            fields = ", ".join(sorted(serializer.errors))
            raise InvalidPayload(
                f"The payload of {jt.name!r} is invalid in: {fields}.", errors=serializer.errors
            )
        normalised = dict(serializer.data)
    encoded = _encode(normalised)
    _check_payload_size(encoded, limit)
    return normalised, encoded


_thread_serializers = threading.local()


def _payload_serializer(
    jt: JobType, data: dict[str, Any], cache: dict[Any, Serializer[Any]] | None
) -> Serializer[Any]:
    """A serializer bound to ``data``: new, or the cached one of this class, reset.

    DRF deep-copies every declared field for each serializer instance, which
    was over a third of a bulk submission's time (bench/results/profile-submit-bulk.txt).
    Within one bulk call the instance is reused, and without ``cache`` one
    instance per serializer class and thread is (a serializer is never shared
    between threads): only what ``is_valid()`` and ``data`` cache is per
    payload, and it is cleared here.
    """
    assert jt.payload_serializer is not None
    if cache is None:
        cache = _thread_serializers.__dict__
    key: Any = jt.payload_serializer
    serializer = cache.get(key)
    if serializer is None:
        serializer = cache[key] = jt.payload_serializer(data=data)
        return serializer
    serializer.initial_data = data
    for attr in ("_validated_data", "_errors", "_data"):
        serializer.__dict__.pop(attr, None)
    return serializer


def _check_payload_size(encoded: str, limit: int) -> None:
    # Compact JSON escapes every non-ASCII character, so its length is its size in bytes.
    size = len(encoded) if encoded.isascii() else len(encoded.encode())
    if size > limit:
        raise PayloadTooLarge(
            f"The payload is {size} bytes, over JOBS_MAX_PAYLOAD_BYTES={limit}. "
            "Pass a reference (an id or a URL) to large data instead of the data itself.",
            errors={"payload": [f"Payload is {size} bytes; the limit is {limit}."]},
        )


def _prepare(
    request: JobRequest,
    *,
    organization: Organization | None,
    now: datetime,
    job_id: tuple[uuid.UUID, str],
    serializers: dict[Any, Serializer[Any]] | None = None,
) -> _Prepared:
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
    if key is not None and (problem := text_problem(key)) is not None:
        raise InvalidSubmission(f"idempotency_key is refused: {problem}", field="idempotency_key")
    delay = request.delay
    if delay is not None and not timedelta(0) <= delay <= MAX_DELAY:
        raise InvalidSubmission(
            f"delay {delay} is out of range; use 0 seconds to 7 days.", field="delay_seconds"
        )
    if request.max_retries is not None and (
        isinstance(request.max_retries, bool)
        or not isinstance(request.max_retries, int)
        or not 0 <= request.max_retries <= 100
    ):
        raise InvalidSubmission(
            f"max_retries must be a whole number from 0 to 100, not {request.max_retries!r}.",
            field="max_retries",
        )
    queue = jt.queue if request.queue is None else request.queue
    if request.queue is not None and queue not in CONSUMED_QUEUES:
        raise InvalidSubmission(
            f"queue {queue!r} is not a queue workers consume; use one of "
            f"{', '.join(CONSUMED_QUEUES)}.",
            field="queue",
        )
    payload, payload_json = _validate(jt, request.payload, serializers)

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
    return _Prepared(
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


def _admit(*, organization: Organization | None, count: int) -> None:
    """Fairness, and the check that Redis answers, before anything is written.

    An organization's admission is a Redis round trip that raises
    ``BrokerUnavailable`` when Redis is down; only system submissions (no
    organization) need a separate PING for that.
    """
    if not submission_admit(organization=organization, count=count):
        ensure_broker_available()


#: Columns whose value differs between the jobs of one INSERT, with their Postgres types.
_ROW_COLUMNS = {
    "id": "uuid",
    "job_type": "text",
    "queue": "text",
    "priority": "smallint",
    "payload": "jsonb",
    "max_retries": "integer",
    "idempotency_key": "text",
    "created_at": "timestamptz",
    "scheduled_for": "timestamptz",
}


def _insert(prepared: Sequence[_Prepared], *, organization: Organization | None) -> int | None:
    """Write the ledger rows and their outbox row with one statement; return the outbox row's id.

    ``bulk_create`` spent most of a bulk submission building a model instance
    and adapting some 20 parameters per row (bench/results/profile-submit-bulk.txt).
    Here the rows travel as one JSON array that Postgres unpacks with
    ``jsonb_to_recordset``; every other column takes the model's default,
    read from the model, so a new column with a default needs no change here.
    Constraints (idempotency keys, priority range) are checked by Postgres
    as for any INSERT. ``enqueued_at`` is the creation time: the
    :class:`~jobs.models.JobOutbox` row, in the same statement, stands for the
    send until :func:`_send` deletes it.
    """
    if not prepared:
        return None
    job_ids = [p.id_text for p in prepared]
    if connection.vendor != "postgresql":
        # SQLite (make run) has no jsonb_to_recordset.
        with transaction.atomic():
            Job.objects.bulk_create([_job(p, organization=organization) for p in prepared])
            return JobOutbox.objects.create(job_ids=job_ids, created_at=prepared[0].created_at).pk
    sql, defaults = _insert_statement()
    constants = [
        (organization.pk if organization is not None else None) if value is _ORGANIZATION else value
        for value in defaults
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [*constants, _rows_json(prepared), _encode(job_ids), prepared[0].created_at]
        )
        return int(cursor.fetchone()[0])


def _rows_json(prepared: Sequence[_Prepared]) -> str:
    """The rows of :func:`_insert` as one JSON array, keyed by ``_ROW_COLUMNS``.

    Each row is written as text around its payload's JSON, encoded once by
    validation, instead of building a dict per row for ``json.dumps``.
    """
    encode = _encode
    stamps: dict[datetime, str] = {}
    rows = []
    for p in prepared:
        created = stamps.get(p.created_at)
        if created is None:
            created = stamps[p.created_at] = encode(p.created_at.isoformat())
        scheduled = encode(p.scheduled_for.isoformat()) if p.scheduled_for else "null"
        max_retries = p.max_retries
        key = p.idempotency_key
        # Validated: priority is an int; job_type and queue are registered names.
        rows.append(
            f'{{"id":"{p.id_text}","job_type":{encode(p.job_type)},"queue":{encode(p.queue)},'
            f'"priority":{p.priority:d},"payload":{p.payload_json},'
            f'"max_retries":{max_retries if type(max_retries) is int else encode(max_retries)},'
            f'"idempotency_key":{"null" if key is None else encode(key)},'
            f'"created_at":{created},"scheduled_for":{scheduled}}}'
        )
    return f"[{','.join(rows)}]"


_ORGANIZATION = object()
_insert_cache: tuple[str, list[Any]] | None = None


def _insert_statement() -> tuple[str, list[Any]]:
    """The INSERT of :func:`_insert`, and its constant parameters (built once per process).

    ``_ORGANIZATION`` stands for the organization's id in the parameters.
    """
    global _insert_cache
    if _insert_cache is not None:
        return _insert_cache
    template = Job()
    quote = connection.ops.quote_name
    columns: list[str] = []
    selects: list[str] = []
    defaults: list[Any] = []
    for f in Job._meta.concrete_fields:
        columns.append(quote(f.column or f.attname))
        if f.attname in _ROW_COLUMNS:
            selects.append(f"r.{f.attname}")
        elif f.attname == "enqueued_at":
            selects.append("r.created_at")
        else:
            selects.append("%s")
            defaults.append(
                _ORGANIZATION
                if f.attname == "organization_id"
                else f.get_db_prep_save(getattr(template, f.attname), connection)
            )
    record = ", ".join(f"{name} {kind}" for name, kind in _ROW_COLUMNS.items())
    # Only names from the model go into the text; every value is a parameter.
    sql = (
        f"WITH jobs AS (INSERT INTO {quote(Job._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selects)} FROM jsonb_to_recordset(%s::jsonb) AS r({record})) "
        f"INSERT INTO {quote(JobOutbox._meta.db_table)} (job_ids, created_at) "
        "VALUES (%s::jsonb, %s) RETURNING id"
    )
    _insert_cache = (sql, defaults)
    return _insert_cache


def _job(p: _Prepared, *, organization: Organization | None, alias: str | None = None) -> Job:
    """The model instance of a row just inserted, as the database holds it.

    Built positionally, as Django builds the rows of a query (``Model.from_db``):
    the keyword path of ``Model.__init__`` was a fifth of a bulk submission's CPU.
    ``alias`` is the connection's, when the caller has read it already.
    """
    if alias is None:
        alias = connection.alias
    plan = _model_plan()
    if plan.plain and not (pre_init.has_listeners(Job) or post_init.has_listeners(Job)):
        # What Model.from_db() leaves behind, without Model.__init__'s per-field
        # setattr and its two signals (nobody listens): a third of the cost.
        state = ModelState()
        state.adding = False
        state.db = alias
        values = plan.template.copy()
        values["_state"] = state
        values["id"] = p.id
        values["organization_id"] = organization.pk if organization is not None else None
        values["job_type"] = p.job_type
        values["queue"] = p.queue
        values["priority"] = p.priority
        values["payload"] = p.payload
        values["max_retries"] = p.max_retries
        values["idempotency_key"] = p.idempotency_key
        values["created_at"] = p.created_at
        values["scheduled_for"] = p.scheduled_for
        values["enqueued_at"] = p.created_at
        job = Job.__new__(Job)
        job.__dict__ = values
    else:
        row = list(plan.defaults)
        index_of = plan.index_of
        for name, value in (
            ("id", p.id),
            ("organization_id", organization.pk if organization is not None else None),
            ("job_type", p.job_type),
            ("queue", p.queue),
            ("priority", p.priority),
            ("payload", p.payload),
            ("max_retries", p.max_retries),
            ("idempotency_key", p.idempotency_key),
            ("created_at", p.created_at),
            ("scheduled_for", p.scheduled_for),
            ("enqueued_at", p.created_at),
        ):
            row[index_of[name]] = value
        job = Job.from_db(alias, (), row)
    plan.organization_field.set_cached_value(job, organization)
    return job


@dataclass(frozen=True)
class _ModelPlan:
    """What :func:`_job` needs about ``Job``, read once per process.

    ``defaults`` holds every concrete field's default in field order, shared
    between instances, so each is immutable or replaced per row (``payload``'s
    ``dict`` always is); ``template`` maps each field's attribute to it. ``plain``: no field's attribute has a setter but the
    foreign key's (which only drops a cached related object, and a new
    instance has none), so the values may go straight into ``__dict__``.
    """

    defaults: tuple[Any, ...]
    index_of: dict[str, int]
    template: dict[str, Any]
    plain: bool
    organization_field: Any


_plan_cache: _ModelPlan | None = None


def _model_plan() -> _ModelPlan:
    global _plan_cache
    if _plan_cache is None:
        template = Job()
        fields = Job._meta.concrete_fields
        setters = [
            type(attr)
            for f in fields
            if hasattr(attr := inspect.getattr_static(Job, f.attname, None), "__set__")
        ]
        _plan_cache = _ModelPlan(
            defaults=tuple(getattr(template, f.attname) for f in fields),
            index_of={f.attname: i for i, f in enumerate(fields)},
            template={f.attname: getattr(template, f.attname) for f in fields},
            plain=all(kind is ForeignKeyDeferredAttribute for kind in setters),
            organization_field=Job._meta.get_field("organization"),
        )
    return _plan_cache


def _existing_by_key(organization: Organization | None, keys: Sequence[str]) -> dict[str, Job]:
    qs = Job.objects.filter(idempotency_key__in=keys)
    qs = (
        qs.filter(organization=organization)
        if organization is not None
        else qs.filter(organization__isnull=True)
    )
    return {job.idempotency_key: job for job in qs if job.idempotency_key is not None}


def _log_submitted(prepared: Sequence[_Prepared], *, organization: Organization | None) -> None:
    """One line per job; a batch gets one line naming every id, and per-job lines at DEBUG.

    Each line costs about 70 µs of CPU (redaction and JSON formatting), which
    doubled a bulk submission's CPU at 1,000 lines per call.
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
    prepared: Sequence[_Prepared], *, organization: Organization | None, outbox_id: int | None
) -> None:
    if not prepared:
        return
    _log_submitted(prepared, organization=organization)
    items = [(p.message, p.delay_ms) for p in prepared]
    transaction.on_commit(lambda: _send(items, outbox_id))


def _send(items: Sequence[tuple[Message[Any], int | None]], outbox_id: int | None) -> None:
    """Send a submission's messages; once Redis has them, delete its outbox row.

    If Redis fails, the row stays and the recovery loop sends the jobs after
    ``JOBS_OUTBOX_GRACE_MS``; if only the DELETE fails, the loop sends them
    again, and the ledger skips the duplicates.
    """
    if enqueue_messages(items, mark_enqueued=False) and outbox_id is not None:
        job_outbox_delete(outbox_id=outbox_id)
