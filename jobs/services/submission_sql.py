"""The tuned half of submission: one INSERT for many rows, model instances built cheaply.

:mod:`jobs.services.submission` is the readable path; this module is what
makes it fast, fenced here: the ledger rows and their outbox row travel as
one JSON document in one statement (``jsonb_to_recordset``), and the returned
``Job`` instances are built the way Django builds the rows of a query,
without ``Model.__init__``. tests/unit/test_submission_rows.py holds both
equal to what the ORM would do. Why each bypass exists, with its measurements,
is in bench/HISTORY.md.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.signals import post_init, pre_init
from dramatiq import Message

from jobs.models import Job, JobOutbox
from tenants.models import Organization

logger = logging.getLogger(__name__)

#: Compact JSON, keys sorted, from one encoder built once.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


@dataclass(slots=True)
class PreparedJob:
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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector during a bulk submission.

    A call allocates some fifteen small containers per job, and the thousand
    jobs it holds survive into the oldest generation, which then triggered
    full collections of the whole process's heap (bench/HISTORY.md). The
    call's own objects form no cycles (reference counting frees them); a
    cycle made meanwhile, such as an exception's traceback, waits for the
    first collection after the call. The collector is enabled again on the
    way out, unless it was disabled before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


def jobs_insert(
    prepared: Sequence[PreparedJob], *, organization: Organization | None
) -> int | None:
    """Write the ledger rows and their outbox row with one statement; return the outbox row's id.

    ``bulk_create`` spent most of a bulk submission building a model instance
    and adapting some 20 parameters per row (bench/HISTORY.md). Here the rows travel as one JSON array that Postgres unpacks with
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


def jobs_insert_undo(prepared: Sequence[PreparedJob], *, outbox_id: int | None) -> None:
    """Delete the rows and the outbox row :func:`jobs_insert` wrote, in one statement.

    For a submission that fairness refused after its INSERT. A database
    error is logged, not raised: the caller raises the refusal. The rows then
    stay; outside a transaction they were committed, and the relay sends
    them after ``JOBS_OUTBOX_GRACE_MS``.
    """
    quote = connection.ops.quote_name
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                # Only names from the models go into the text; every value is a parameter.
                f"WITH gone AS (DELETE FROM {quote(Job._meta.db_table)} "  # noqa: S608
                "WHERE id = ANY(%s::uuid[])) "
                f"DELETE FROM {quote(JobOutbox._meta.db_table)} WHERE id = %s",
                [[p.id for p in prepared], outbox_id],
            )
    except DatabaseError:
        logger.exception(
            "Could not delete the %d refused job(s) %s again; outside a transaction the "
            "outbox relay will send them.",
            len(prepared),
            " ".join(p.id_text for p in prepared),
        )


def _rows_json(prepared: Sequence[PreparedJob]) -> str:
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


def job_instance(
    p: PreparedJob, *, organization: Organization | None, alias: str | None = None
) -> Job:
    """The model instance of a row just inserted, as the database holds it.

    Built positionally, as Django builds the rows of a query (``Model.from_db``),
    because the keyword path of ``Model.__init__`` dominated a bulk
    submission's CPU (bench/HISTORY.md).
    ``alias`` is the connection's, when the caller has read it already.
    """
    if alias is None:
        alias = connection.alias
    plan = _model_plan()
    if plan.plain and not (pre_init.has_listeners(Job) or post_init.has_listeners(Job)):
        # What Model.from_db() leaves behind, without Model.__init__'s per-field
        # setattr and its two signals (nobody listens).
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
