"""Forward-only status transitions of the ledger, as the worker drives them.

Every update is conditional (``UPDATE ... WHERE status IN (...)``) and tied
to the attempt number, so a late or duplicate event never moves a row
backwards or clobbers a newer attempt. On Postgres each transition is one
statement (one round trip); other databases take the portable ORM path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.conf import jobs_settings
from jobs.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobEventKind, JobStatus

#: Use the one-statement SQL of Postgres when available; the ORM path serves other databases.
USE_POSTGRES_FAST_PATH = True

#: A message for a job in one of these statuses is delivered to the job. A
#: ``running`` job is not: a second message for it is a duplicate delivery.
#: When its worker dies, the recovery loop moves it to ``retrying`` first.
_STARTABLE = (JobStatus.QUEUED, JobStatus.RETRYING)

#: ``error_type`` of an attempt whose worker died; these count towards the poison threshold.
WORKER_LOST = "WorkerLost"
#: ``error_type`` of a job failed because its worker died too often while running it.
POISON = "PoisonMessage"


class StartVerdict(StrEnum):
    RUN = "run"  # claimed: run the job
    FINISHED = "finished"  # already succeeded, failed or cancelled: acknowledge, do not run
    CANCELLED = "cancelled"  # a cancel was pending: now cancelled, do not run
    RUNNING = "running"  # another attempt is running: a duplicate delivery, do not run
    POISON = "poison"  # its worker died too often running it: now failed, dead-letter it
    MISSING = "missing"  # no ledger row


@dataclass(frozen=True)
class StartDecision:
    verdict: StartVerdict
    attempt: int = 0


# Claims a batch of deliveries. The same snapshot serves every CTE of a
# statement, so ``lost`` closes only attempts that were open before this claim
# (and a job is never both finished and claimed by one statement).
#
# The ledger's batch statements always touch a handful of known rows, so each
# must find them by key: every table is restricted by ``= ANY(<the input's
# ids>)`` on its job id, and status and open-attempt conditions are written so no index can
# serve them (``status || ''``, ``COALESCE(finished_at, ...)``). With the
# statistics of a table that just grew (a fresh deployment, a burst), the
# planner otherwise scanned every queued job, every open attempt, or the whole
# attempt table for each batch (hundreds of rows per job in the benchmark).
_START_CTES = """
starting AS (
    SELECT * FROM jsonb_to_recordset(%(starts)s::jsonb) AS i(id uuid, worker_id text)
), claimed AS (
    UPDATE jobs_job j
       SET status = 'running',
           attempts = j.attempts + 1,
           started_at = COALESCE(j.started_at, %(now)s)
      FROM starting i
     WHERE j.id = i.id
       AND j.id = ANY(ARRAY(SELECT id FROM starting))
       AND j.status || '' IN ('queued', 'retrying')
       AND j.cancel_requested_at IS NULL
       AND (SELECT count(*) FROM jobs_jobattempt a
             WHERE a.job_id = j.id AND a.outcome = 'lost' AND a.error_type = %(lost)s
               AND a.started_at > COALESCE(
                   (SELECT max(e.created_at) FROM jobs_jobevent e
                     WHERE e.job_id = j.id AND e.kind IN ('retried', 'replayed')),
                   '-infinity'::timestamptz)) < %(poison)s
 RETURNING j.id, j.attempts, i.worker_id
), lost AS (
    UPDATE jobs_jobattempt
       SET outcome = 'lost', finished_at = %(now)s, error_type = %(lost)s,
           error_message = 'The attempt was still open when the job was claimed again.'
     WHERE job_id IN (SELECT id FROM claimed)
       AND job_id = ANY(ARRAY(SELECT id FROM starting))
       AND COALESCE(finished_at, 'infinity') = 'infinity'
), opened AS (
    INSERT INTO jobs_jobattempt
           (job_id, number, worker_id, started_at, finished_at, outcome, error_type, error_message)
    SELECT id, attempts, worker_id, %(now)s, NULL, '', '', '' FROM claimed
)"""


@contextmanager
def _server_bound_cursor() -> Iterator[psycopg.Cursor[Any]]:
    """A server-side binding cursor on Django's connection of this thread.

    Django's psycopg cursors bind parameters on the client and have every
    statement planned again; the ledger's few hot statements are prepared
    once per connection instead (``prepare=True``). Errors surface as
    Django's ``DatabaseError`` classes, like any other query.
    """
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        raw = wrapper.cursor.connection
        if raw.prepare_threshold is None and jobs_settings.ledger_prepared_statements:
            # Django turns preparing off for poolers' sake; its own (client-side
            # binding) cursors never prepare, so this affects these statements only.
            raw.prepare_threshold = 5
        with psycopg.Cursor(raw) as cursor:
            yield cursor


def uses_postgres_fast_path() -> bool:
    """Whether transitions take the one-statement Postgres path (and can be batched)."""
    return USE_POSTGRES_FAST_PATH and connection.vendor == "postgresql"


_fast_path = uses_postgres_fast_path


def job_attempt_start(*, job_id: str, worker_id: str) -> StartDecision:
    """Claim a delivery: mark the job running and open an attempt row.

    A job already finished or running is not run again (a duplicate
    delivery). A job whose cancel was requested before it started becomes
    cancelled. A job whose worker died ``JOBS_POISON_THRESHOLD`` times while
    running it becomes failed (a poison message).
    """
    now = timezone.now()
    poison = jobs_settings.poison_threshold
    if _fast_path():
        attempts = job_attempts_start_many([(job_id, worker_id)], now=now)
        if job_id in attempts:
            return StartDecision(StartVerdict.RUN, attempt=attempts[job_id])
    elif _lost_count(job_id) < poison:
        with transaction.atomic():
            claimed = Job.objects.filter(
                pk=job_id, status__in=_STARTABLE, cancel_requested_at__isnull=True
            ).update(
                status=JobStatus.RUNNING,
                attempts=F("attempts") + 1,
                started_at=Coalesce(F("started_at"), now),
            )
            if claimed:
                attempt = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
                JobAttempt.objects.filter(job_id=job_id, finished_at__isnull=True).update(
                    outcome=AttemptOutcome.LOST, finished_at=now, error_type=WORKER_LOST
                )
                JobAttempt.objects.create(
                    job_id=job_id, number=attempt, worker_id=worker_id, started_at=now
                )
                return StartDecision(StartVerdict.RUN, attempt=attempt)
    return _why_not_started(job_id, now)


def job_attempts_start_many(
    deliveries: Sequence[tuple[str, str]], *, now: datetime | None = None
) -> dict[str, int]:
    """Claim many deliveries at once (Postgres only): ``{job_id: attempt}`` of those claimed.

    ``deliveries`` are ``(job_id, worker_id)`` pairs with distinct job ids. A
    delivery left out of the answer was not claimed; :func:`job_start_refused`
    says why.
    """
    return job_transitions_write(starts=deliveries, now=now)[1]


def job_start_refused(*, job_id: str, now: datetime | None = None) -> StartDecision:
    """Why a delivery was not claimed, acting on it: cancel a pending cancel, fail a poison job."""
    return _why_not_started(job_id, now or timezone.now())


def _why_not_started(job_id: str, now: datetime) -> StartDecision:
    row = Job.objects.filter(pk=job_id).values_list("status", "cancel_requested_at").first()
    if row is None:
        return StartDecision(StartVerdict.MISSING)
    status, cancel_requested_at = row
    if status in _STARTABLE and cancel_requested_at is not None:
        Job.objects.filter(pk=job_id, status__in=_STARTABLE).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        return StartDecision(StartVerdict.CANCELLED)
    if status in _STARTABLE:
        lost = _lost_count(job_id)
        if lost >= jobs_settings.poison_threshold and Job.objects.filter(
            pk=job_id, status__in=_STARTABLE
        ).update(
            status=JobStatus.FAILED,
            error_type=POISON,
            error_message=(
                f"Poison message: the worker running this job died {lost} times "
                f"(JOBS_POISON_THRESHOLD={jobs_settings.poison_threshold}); it is not "
                "delivered again. Fix the cause, then retry the job explicitly."
            ),
            error_traceback="",
            finished_at=now,
            dead_lettered_at=now,
        ):
            return StartDecision(StartVerdict.POISON)
        # Claimed by a concurrent delivery between the two statements.
        status = Job.objects.values_list("status", flat=True).get(pk=job_id)
    if status == JobStatus.RUNNING:
        return StartDecision(StartVerdict.RUNNING)
    return StartDecision(StartVerdict.FINISHED)


def _lost_count(job_id: str) -> int:
    """Worker deaths while running the job since its last explicit retry or replay."""
    lost = JobAttempt.objects.filter(
        job_id=job_id, outcome=AttemptOutcome.LOST, error_type=WORKER_LOST
    )
    since = JobEvent.objects.filter(
        job_id=job_id, kind__in=[JobEventKind.RETRIED, JobEventKind.REPLAYED]
    ).aggregate(at=Max("created_at"))["at"]
    if since is not None:
        lost = lost.filter(started_at__gt=since)
    return lost.count()


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt ended, and what the job becomes.

    Parameters:
      status: the job's next status (succeeded, retrying, failed or cancelled).
      outcome: the attempt's outcome.
      result_json: the encoded result, for a success.
    """

    status: JobStatus
    outcome: AttemptOutcome
    result_json: str | None = None
    error_type: str = ""
    error_message: str = ""
    error_traceback: str = ""


# Closes a batch of attempts in one statement; a job moves only if it is still
# ``running`` on the same attempt.
_FINISH_CTES = """
ending AS (
    SELECT * FROM jsonb_to_recordset(%(finishes)s::jsonb) AS i(
        id uuid, attempt int, status text, outcome text, result text, error_type text,
        error_message text, attempt_error text, error_traceback text)
), moved AS (
    UPDATE jobs_job j
       SET status = i.status,
           result = CASE WHEN i.status = 'succeeded' THEN i.result::jsonb ELSE j.result END,
           progress = CASE WHEN i.status = 'succeeded' THEN 100 ELSE j.progress END,
           error_type = i.error_type,
           error_message = i.error_message,
           error_traceback = i.error_traceback,
           finished_at = CASE WHEN i.status IN ('succeeded', 'failed', 'cancelled')
                              THEN %(now)s END,
           dead_lettered_at = CASE WHEN i.status = 'failed' THEN %(now)s END,
           enqueued_at = CASE WHEN i.status = 'retrying' THEN %(now)s ELSE j.enqueued_at END
      FROM ending i
     WHERE j.id = i.id AND j.id = ANY(ARRAY(SELECT id FROM ending))
       AND j.status || '' = 'running' AND j.attempts = i.attempt
 RETURNING j.id
), closed AS (
    UPDATE jobs_jobattempt a
       SET outcome = i.outcome, finished_at = %(now)s,
           error_type = i.error_type, error_message = i.attempt_error
      FROM ending i
     WHERE a.job_id = i.id AND a.job_id = ANY(ARRAY(SELECT id FROM ending))
       AND a.number = i.attempt
       AND COALESCE(a.finished_at, 'infinity') = 'infinity'
)"""

#: The three statements of a batch: finishes, starts, or both (for distinct jobs).
_PG_FINISH_MANY = f"WITH {_FINISH_CTES}\nSELECT 'f', id::text, 0 FROM moved"
_PG_START_MANY = f"WITH {_START_CTES}\nSELECT 's', id::text, attempts FROM claimed"
_PG_FINISH_AND_START_MANY = (  # constant fragments only
    f"WITH {_FINISH_CTES},\n{_START_CTES}\n"  # noqa: S608
    "SELECT 'f', id::text, 0 FROM moved UNION ALL SELECT 's', id::text, attempts FROM claimed"
)


def job_attempts_finish_many(
    ends: Sequence[tuple[str, int, AttemptEnd]], *, now: datetime | None = None
) -> set[str]:
    """Close many attempts at once (Postgres only); returns the job ids whose row moved.

    ``ends`` are ``(job_id, attempt, end)`` with distinct job ids.
    """
    return job_transitions_write(finishes=ends, now=now)[0]


def job_transitions_write(
    *,
    finishes: Sequence[tuple[str, int, AttemptEnd]] = (),
    starts: Sequence[tuple[str, str]] = (),
    now: datetime | None = None,
) -> tuple[set[str], dict[str, int]]:
    """Close attempts and claim deliveries in one statement (Postgres only).

    ``finishes`` are ``(job_id, attempt, end)``, ``starts`` are ``(job_id,
    worker_id)``; every job id appears once in all. Returns the job ids whose
    row the finishes moved, and ``{job_id: attempt}`` of the deliveries
    claimed. One round trip and one commit, with a statement prepared once
    per connection and parameters sent as JSON (far cheaper to encode than
    arrays).
    """
    if not finishes and not starts:
        return set(), {}
    ids = [job_id for job_id, _, _ in finishes] + [job_id for job_id, _ in starts]
    if len(set(ids)) != len(ids):
        raise ValueError("a job may appear only once in a batch of transitions")
    params: dict[str, Any] = {"now": now or timezone.now()}
    if finishes:
        params["finishes"] = json.dumps(
            [
                {
                    "id": job_id,
                    "attempt": attempt,
                    "status": str(end.status),
                    "outcome": str(end.outcome),
                    "result": end.result_json,
                    "error_type": end.error_type[:200],
                    "error_message": end.error_message,
                    "attempt_error": end.error_message[:2000],
                    "error_traceback": end.error_traceback,
                }
                for job_id, attempt, end in finishes
            ]
        )
    if starts:
        params["starts"] = json.dumps([{"id": job_id, "worker_id": w} for job_id, w in starts])
        params["lost"] = WORKER_LOST
        params["poison"] = jobs_settings.poison_threshold
    sql = (
        _PG_FINISH_AND_START_MANY
        if finishes and starts
        else _PG_FINISH_MANY
        if finishes
        else _PG_START_MANY
    )
    moved: set[str] = set()
    claimed: dict[str, int] = {}
    with _server_bound_cursor() as cursor:
        cursor.execute(sql, params, prepare=True)
        for kind, job_id, attempt in cursor.fetchall():
            if kind == "f":
                moved.add(job_id)
            else:
                claimed[job_id] = int(attempt)
    return moved, claimed


def job_attempt_finish(*, job_id: str, attempt: int, end: AttemptEnd) -> bool:
    """Close an attempt and move the job on. Returns whether the job row changed.

    The job moves only if it is still ``running`` on this same attempt, so a
    late event from an older attempt is recorded on its attempt row alone.
    """
    now = timezone.now()
    if _fast_path():
        return job_id in job_attempts_finish_many([(job_id, attempt, end)], now=now)
    terminal = end.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    error_type = end.error_type[:200]
    with transaction.atomic():
        fields: dict[str, Any] = {
            "status": end.status,
            "error_type": error_type,
            "error_message": end.error_message,
            "error_traceback": end.error_traceback,
            "finished_at": now if terminal else None,
            "dead_lettered_at": now if end.status == JobStatus.FAILED else None,
        }
        if end.status == JobStatus.RETRYING:
            fields["enqueued_at"] = now
        if end.status == JobStatus.SUCCEEDED:
            fields["result"] = json.loads(end.result_json) if end.result_json else None
            fields["progress"] = 100
        changed = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt).update(
            **fields
        )
        JobAttempt.objects.filter(job_id=job_id, number=attempt, finished_at__isnull=True).update(
            outcome=end.outcome,
            finished_at=now,
            error_type=error_type,
            error_message=end.error_message[:2000],
        )
    return bool(changed)


def job_adopt_message(
    *, job_id: str, job_type: str, queue: str, payload: dict[str, Any], organization_id: int | None
) -> None:
    """Create the ledger row of a message sent without one (a raw ``actor.send``)."""
    Job.objects.bulk_create(
        [
            Job(
                id=job_id,
                organization_id=organization_id,
                job_type=job_type,
                queue=queue,
                payload=payload,
            )
        ],
        ignore_conflicts=True,
    )


def running_filter(job_id: str, attempt: int) -> Q:
    return Q(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


# Gives back claims that never ran: the attempt row goes, the job returns to waiting.
_PG_RELEASE_MANY = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(claims)s::jsonb) AS i(id uuid, number integer)
), gone AS (
    DELETE FROM jobs_jobattempt a USING input i
     WHERE a.job_id = i.id AND a.number = i.number AND a.finished_at IS NULL
 RETURNING a.job_id, a.number
)
UPDATE jobs_job j
   SET attempts = j.attempts - 1,
       status = CASE WHEN j.status <> 'running' THEN j.status
                     WHEN j.attempts > 1 THEN 'retrying' ELSE 'queued' END,
       started_at = CASE WHEN j.status = 'running' AND j.attempts = 1 THEN NULL
                         ELSE j.started_at END
  FROM gone g
 WHERE j.id = g.job_id AND j.attempts = g.number
RETURNING j.id::text
"""


def job_attempts_release(claims: Sequence[tuple[str, int]]) -> set[str]:
    """Undo claims whose message will not run here after all (Postgres only).

    ``claims`` are ``(job_id, attempt)`` taken ahead by a worker's consumer
    (:meth:`jobs.middleware.ledger.Ledger.take_ahead`) for a message that is
    then deferred, dead-lettered or put back on its queue at shutdown. The
    attempt row that never ran is deleted and the job is waiting again
    (``queued``, or ``retrying`` after earlier attempts), as if never
    claimed, so the next delivery claims it normally. An attempt already
    closed (the recovery loop marked it lost) is left alone. Returns the job
    ids released.
    """
    if not claims:
        return set()
    payload = json.dumps([{"id": job_id, "number": number} for job_id, number in claims])
    with connection.cursor() as cursor:
        cursor.execute(_PG_RELEASE_MANY, {"claims": payload})
        return {row[0] for row in cursor.fetchall()}
