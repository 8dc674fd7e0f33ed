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


_PG_START = """
WITH claimed AS (
    UPDATE jobs_job
       SET status = 'running',
           attempts = attempts + 1,
           started_at = COALESCE(started_at, %(now)s)
     WHERE id = %(id)s
       AND status IN ('queued', 'retrying')
       AND cancel_requested_at IS NULL
       AND (SELECT count(*) FROM jobs_jobattempt a
             WHERE a.job_id = %(id)s AND a.outcome = 'lost' AND a.error_type = %(lost)s
               AND a.started_at > COALESCE(
                   (SELECT max(e.created_at) FROM jobs_jobevent e
                     WHERE e.job_id = %(id)s AND e.kind IN ('retried', 'replayed')),
                   '-infinity'::timestamptz)) < %(poison)s
 RETURNING id, attempts
), lost AS (
    UPDATE jobs_jobattempt
       SET outcome = 'lost', finished_at = %(now)s, error_type = %(lost)s,
           error_message = 'The attempt was still open when the job was claimed again.'
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

    A job already finished or running is not run again (a duplicate
    delivery). A job whose cancel was requested before it started becomes
    cancelled. A job whose worker died ``JOBS_POISON_THRESHOLD`` times while
    running it becomes failed (a poison message).
    """
    now = timezone.now()
    poison = jobs_settings.poison_threshold
    if _fast_path():
        with connection.cursor() as cursor:
            cursor.execute(
                _PG_START,
                {
                    "id": job_id,
                    "now": now,
                    "worker_id": worker_id,
                    "lost": WORKER_LOST,
                    "poison": poison,
                },
            )
            row = cursor.fetchone()
        if row is not None:
            return StartDecision(StartVerdict.RUN, attempt=int(row[0]))
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
           dead_lettered_at = %(dead_lettered_at)s,
           enqueued_at = CASE WHEN %(status)s = 'retrying' THEN %(now)s ELSE enqueued_at END
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
