"""Forward-only status transitions of the ledger, as the worker drives them.

A delivery is *claimed* (``queued``/``retrying`` → ``running``, attempt + 1,
an attempt row opened) before the job runs, and *closed* after it
(``running`` → ``succeeded`` / ``retrying`` / ``failed`` / ``cancelled``).
Every update is conditional (``… WHERE status IN (…)``) and tied to the
attempt number, so a late or duplicate event never moves a row backwards or
clobbers a newer attempt. The statements themselves, tuned to be one round
trip per batch of jobs, are in :mod:`jobs.services.transitions_sql`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from dramatiq.middleware import TimeLimitExceeded

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError, SoftTimeLimitExceeded
from jobs.models import AttemptOutcome, Job, JobAttempt, JobEvent, JobEventKind, JobStatus
from jobs.services.transitions_sql import (
    WORKER_LOST,
    job_attempts_release,
    job_transitions_write,
)

__all__ = [
    "POISON",
    "WORKER_LOST",
    "AttemptEnd",
    "StartDecision",
    "StartVerdict",
    "attempt_end",
    "job_adopt_message",
    "job_attempt_finish",
    "job_attempt_start",
    "job_attempts_release",
    "job_claim_reply_lost",
    "job_start_refused",
    "job_transitions_write",
    "running_filter",
]

#: A message for a job in one of these statuses is delivered to the job. A
#: ``running`` job is not: a second message for it is a duplicate delivery.
#: When its worker dies, the recovery loop moves it to ``retrying`` first.
_STARTABLE = (JobStatus.QUEUED, JobStatus.RETRYING)

#: ``error_type`` of a job failed because its worker died too often while running it.
POISON = "PoisonMessage"

#: ``error_type`` of an attempt whose claim committed but whose claimant never heard so.
CLAIM_REPLY_LOST = "ClaimReplyLost"

#: Longest error message kept on a job row.
MAX_ERROR_MESSAGE = 4_000


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
    #: False for a retry whose message could not be sent: the recovery loop sends it.
    retry_sent: bool = True
    #: When the retry's message was sent (ms since the epoch), if known; else the write's time.
    retry_sent_ms: int | None = None


def job_attempt_start(*, job_id: str, worker_id: str) -> StartDecision:
    """Claim a delivery: mark the job running and open an attempt row.

    A job already finished or running is not run again (a duplicate
    delivery). A job whose cancel was requested before it started becomes
    cancelled. A job whose worker died ``JOBS_POISON_THRESHOLD`` times while
    running it becomes failed (a poison message).
    """
    now = timezone.now()
    claimed = job_transitions_write(starts=[(job_id, worker_id)], now=now)[1]
    if job_id in claimed:
        return StartDecision(StartVerdict.RUN, attempt=claimed[job_id])
    return _why_not_started(job_id, now)


def job_start_refused(*, job_id: str, now: datetime | None = None) -> StartDecision:
    """Why a delivery was not claimed, acting on it: cancel a pending cancel, fail a poison job."""
    return _why_not_started(job_id, now or timezone.now())


def job_claim_reply_lost(*, job_id: str, claimant: str, failed_at: datetime) -> bool:
    """Give back a claim that committed while its claimant saw the database fail.

    A claim's COMMIT can succeed on the server while the connection dies before
    the reply arrives: the claimant counts the claim as failed, never runs the
    job, and sends the message again naming itself. On that delivery the job
    reads ``running``. If its open attempt is the claimant's and began before
    the failure, nobody runs it: the attempt is closed as lost (not a worker
    death, so it does not count towards the poison threshold) and the job is
    claimable again. Returns whether it was.
    """
    with transaction.atomic():
        closed = JobAttempt.objects.filter(
            job_id=job_id,
            worker_id=claimant,
            finished_at__isnull=True,
            started_at__lte=failed_at,
            job__status=JobStatus.RUNNING,
        ).update(
            outcome=AttemptOutcome.LOST,
            finished_at=timezone.now(),
            error_type=CLAIM_REPLY_LOST,
            error_message=(
                "The claim committed, but the worker lost its database connection "
                "before hearing so; the job was claimed again."
            ),
        )
        if not closed:
            return False
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(status=JobStatus.RETRYING)
    return True


def job_attempt_finish(*, job_id: str, attempt: int, end: AttemptEnd) -> bool:
    """Close an attempt and move the job on. Returns whether the job row changed.

    The job moves only if it is still ``running`` on this same attempt, so a
    late event from an older attempt is recorded on its attempt row alone.
    """
    return job_id in job_transitions_write(finishes=[(job_id, attempt, end)])[0]


def attempt_end(
    *,
    cancelled: bool,
    result_json: str | None,
    exception: BaseException | None,
    failed: bool,
    attempt: int,
    retry_sent: bool = True,
    retry_sent_ms: int | None = None,
) -> AttemptEnd:
    """How an attempt ended, from what the worker saw.

    ``cancelled``: the job stopped at a checkpoint after a cancel request;
    ``failed``: Dramatiq's Retries gave up on the message (it is dead-lettered);
    ``exception``: what the job raised, if anything. A failure that Retries
    did not give up on means a retry; ``retry_sent``: whether its message reached Redis,
    ``retry_sent_ms``: when it was sent.
    """
    if cancelled:
        return AttemptEnd(
            status=JobStatus.CANCELLED,
            outcome=AttemptOutcome.CANCELLED,
            error_type="JobCancelled",
            error_message="Cancelled on request while running.",
        )
    if exception is None and not failed:
        return AttemptEnd(
            status=JobStatus.SUCCEEDED, outcome=AttemptOutcome.SUCCEEDED, result_json=result_json
        )
    if exception is None:
        # A middleware failed the message before it ran (AgeLimit).
        error_type, error_message, tb = "MessageExpired", "The message expired before it ran.", ""
    else:
        error_type = type(exception).__name__
        error_message = _describe(exception)
        tb = "".join(traceback.format_exception(exception, limit=30))
    timed_out = isinstance(exception, TimeLimitExceeded | SoftTimeLimitExceeded)
    outcome = AttemptOutcome.TIMED_OUT if timed_out else AttemptOutcome.FAILED
    if failed and exception is not None and not isinstance(exception, PermanentJobError):
        error_message = f"{error_message} (retries exhausted after {attempt} attempts)"
    return AttemptEnd(
        status=JobStatus.FAILED if failed else JobStatus.RETRYING,
        outcome=outcome,
        error_type=error_type,
        error_message=error_message,
        error_traceback=tb,
        retry_sent=retry_sent,
        retry_sent_ms=retry_sent_ms,
    )


def _describe(exception: BaseException) -> str:
    text = str(exception)
    if not text:
        if isinstance(exception, SoftTimeLimitExceeded):
            text = "The job ran past its soft time limit."
        elif isinstance(exception, TimeLimitExceeded):
            text = "The job ran past its hard time limit and was interrupted."
        else:
            text = type(exception).__name__
    return text[:MAX_ERROR_MESSAGE]


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
