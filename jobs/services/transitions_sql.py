"""The ledger's hot statements on Postgres: claim and close attempts in batches.

These are the tuned statements the worker runs for every job, fenced here so
the state machine in :mod:`jobs.services.transitions` reads plainly. Each
batch is one prepared statement (one round trip, one commit) whose rows
travel as one JSON document; the equivalence with the plain rules is held by
tests/integration/test_transitions.py and test_ledger_writer.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

import psycopg
from django.db import connection
from django.utils import timezone

from jobs.conf import jobs_settings

#: ``error_type`` of an attempt whose worker died; these count towards the poison threshold.
WORKER_LOST = "WorkerLost"


class Ending(Protocol):
    """How an attempt ended (:class:`jobs.services.transitions.AttemptEnd`)."""

    @property
    def status(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def result_json(self) -> str | None: ...
    @property
    def error_type(self) -> str: ...
    @property
    def error_message(self) -> str: ...
    @property
    def retry_sent(self) -> bool: ...
    @property
    def retry_sent_ms(self) -> int | None: ...
    @property
    def error_traceback(self) -> str: ...


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
# attempt table for each batch (bench/HISTORY.md).
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


# Closes a batch of attempts in one statement; a job moves only if it is still
# ``running`` on the same attempt.
_FINISH_CTES = """
ending AS (
    SELECT * FROM jsonb_to_recordset(%(finishes)s::jsonb) AS i(
        id uuid, attempt int, status text, outcome text, result text, error_type text,
        error_message text, attempt_error text, error_traceback text, unsent boolean,
        sent_ms bigint)
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
           -- a retry whose send failed stays unsent: the recovery loop's cue to send it
           enqueued_at = CASE WHEN i.status <> 'retrying' THEN j.enqueued_at
                              WHEN i.unsent THEN NULL
                              ELSE COALESCE(to_timestamp(i.sent_ms / 1000.0), %(now)s) END
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


def job_transitions_write(
    *,
    finishes: Sequence[tuple[str, int, Ending]] = (),
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
                    "unsent": not end.retry_sent,
                    "sent_ms": end.retry_sent_ms,
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
