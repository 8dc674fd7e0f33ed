"""Forward-only status transitions of the ledger, as the worker drives them.

Every update is conditional (``UPDATE ... WHERE status IN (...)``) and tied
to the attempt number, so a late or duplicate event never moves a row
backwards or clobbers a newer attempt. On Postgres each transition is one
statement (one round trip); other databases take the portable ORM path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus

#: Use the one-statement SQL of Postgres when available; the ORM path serves other databases.
USE_POSTGRES_FAST_PATH = True

#: A message for a job in one of these statuses is delivered to the job.
_STARTABLE = (JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING)


class StartVerdict(StrEnum):
    RUN = "run"  # claimed: run the job
    FINISHED = "finished"  # already succeeded, failed or cancelled: acknowledge, do not run
    CANCELLED = "cancelled"  # a cancel was pending: now cancelled, do not run
    MISSING = "missing"  # no ledger row


@dataclass(frozen=True)
class StartDecision:
    verdict: StartVerdict
    attempt: int = 0


_PG_START = """
WITH claimed AS (
    UPDATE jobs_job
       SET status = 'running',
           attempts = attempts + 1,
           started_at = COALESCE(started_at, %(now)s)
     WHERE id = %(id)s
       AND status IN ('queued', 'retrying', 'running')
       AND cancel_requested_at IS NULL
 RETURNING id, attempts
), lost AS (
    UPDATE jobs_jobattempt
       SET outcome = 'lost', finished_at = %(now)s
     WHERE job_id = %(id)s AND finished_at IS NULL
       AND EXISTS (SELECT 1 FROM claimed)
), opened AS (
    INSERT INTO jobs_jobattempt
           (job_id, number, worker_id, started_at, finished_at, outcome, error_type, error_message)
    SELECT id, attempts, %(worker_id)s, %(now)s, NULL, '', '', '' FROM claimed
)
SELECT attempts FROM claimed
"""


def _fast_path() -> bool:
    return USE_POSTGRES_FAST_PATH and connection.vendor == "postgresql"


def job_attempt_start(*, job_id: str, worker_id: str) -> StartDecision:
    """Claim a delivery: mark the job running and open an attempt row.

    A job already finished is not run again (a duplicate delivery). A job
    whose cancel was requested before it started becomes cancelled.
    """
    now = timezone.now()
    if _fast_path():
        with connection.cursor() as cursor:
            cursor.execute(_PG_START, {"id": job_id, "now": now, "worker_id": worker_id})
            row = cursor.fetchone()
        if row is not None:
            return StartDecision(StartVerdict.RUN, attempt=int(row[0]))
    else:
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
                    outcome=AttemptOutcome.LOST, finished_at=now
                )
                JobAttempt.objects.create(
                    job_id=job_id, number=attempt, worker_id=worker_id, started_at=now
                )
                return StartDecision(StartVerdict.RUN, attempt=attempt)
    return _why_not_started(job_id, now)


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
    return StartDecision(StartVerdict.FINISHED)


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


_PG_FINISH = """
WITH job AS (
    UPDATE jobs_job
       SET status = %(status)s,
           result = CASE WHEN %(status)s = 'succeeded' THEN %(result)s::jsonb ELSE result END,
           progress = CASE WHEN %(status)s = 'succeeded' THEN 100 ELSE progress END,
           error_type = %(error_type)s,
           error_message = %(error_message)s,
           error_traceback = %(error_traceback)s,
           finished_at = %(finished_at)s,
           dead_lettered_at = %(dead_lettered_at)s
     WHERE id = %(id)s AND status = 'running' AND attempts = %(attempt)s
 RETURNING id
), attempt AS (
    UPDATE jobs_jobattempt
       SET outcome = %(outcome)s, finished_at = %(now)s,
           error_type = %(error_type)s, error_message = %(attempt_error)s
     WHERE job_id = %(id)s AND number = %(attempt)s AND finished_at IS NULL
 RETURNING id
)
SELECT (SELECT count(*) FROM job), (SELECT count(*) FROM attempt)
"""


def job_attempt_finish(*, job_id: str, attempt: int, end: AttemptEnd) -> bool:
    """Close an attempt and move the job on. Returns whether the job row changed.

    The job moves only if it is still ``running`` on this same attempt, so a
    late event from an older attempt is recorded on its attempt row alone.
    """
    now = timezone.now()
    terminal = end.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    params: dict[str, Any] = {
        "id": job_id,
        "attempt": attempt,
        "now": now,
        "status": str(end.status),
        "outcome": str(end.outcome),
        "result": end.result_json,
        "error_type": end.error_type[:200],
        "error_message": end.error_message,
        "attempt_error": end.error_message[:2000],
        "error_traceback": end.error_traceback,
        "finished_at": now if terminal else None,
        "dead_lettered_at": now if end.status == JobStatus.FAILED else None,
    }
    if _fast_path():
        with connection.cursor() as cursor:
            cursor.execute(_PG_FINISH, params)
            row = cursor.fetchone()
        return bool(row and row[0])
    with transaction.atomic():
        fields: dict[str, Any] = {
            "status": end.status,
            "error_type": params["error_type"],
            "error_message": end.error_message,
            "error_traceback": end.error_traceback,
            "finished_at": params["finished_at"],
            "dead_lettered_at": params["dead_lettered_at"],
        }
        if end.status == JobStatus.SUCCEEDED:
            fields["result"] = json.loads(end.result_json) if end.result_json else None
            fields["progress"] = 100
        changed = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt).update(
            **fields
        )
        JobAttempt.objects.filter(job_id=job_id, number=attempt, finished_at__isnull=True).update(
            outcome=end.outcome,
            finished_at=now,
            error_type=params["error_type"],
            error_message=params["attempt_error"],
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
