"""Maps each delivery onto the Postgres ledger: one attempt row, forward-only job status."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import traceback
from contextvars import Token
from typing import Any

import dramatiq
from django.db import DatabaseError, connection
from dramatiq.middleware import Middleware, SkipMessage, TimeLimitExceeded

from jobs.acks import AckGate
from jobs.broker import worker_id
from jobs.conf import jobs_settings
from jobs.errors import SoftTimeLimitExceeded
from jobs.ledger_writer import LedgerWriter
from jobs.logging import bind_log_context, logging_write_through, unbind_log_context
from jobs.models import AttemptOutcome, JobStatus
from jobs.redis_broker import add_fetch_listener, remove_fetch_listener
from jobs.runtime import JobContext, reset_current_job, set_current_job
from jobs.services import (
    AttemptEnd,
    StartDecision,
    StartVerdict,
    job_adopt_message,
    job_attempt_finish,
    job_attempt_start,
)
from jobs.services.transitions import (
    job_attempts_release,
    job_start_refused,
    uses_postgres_fast_path,
)

logger = logging.getLogger(__name__)

#: How long a message waits before another try when the database is unreachable.
DATABASE_DOWN_DELAY_MS = 5_000

_MAX_ERROR_MESSAGE = 4_000

#: A job claimed at fetch that waited longer than this for a job thread looks
#: for a cancel request (one query) before its code runs.
CANCEL_CHECK_AFTER_SECONDS = 0.5

#: Pauses between tries to record an attempt's end while the database is unreachable.
FINISH_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


class Ledger(Middleware):
    """Records every delivery in the ledger and decides whether it runs.

    - before: claim the job (``running``, attempt +1, open a JobAttempt). A job
      already finished or running elsewhere is acknowledged without running
      (a duplicate delivery); a pending cancel cancels it; a job whose worker
      died too often is failed and its message dead-lettered (poison); a
      message without a row gets one (a raw ``actor.send``).
    - after: close the attempt and move the job to ``succeeded``,
      ``retrying`` (Retries re-enqueued it), ``failed`` (Retries gave up and
      the message is dead-lettered) or ``cancelled`` (it stopped at a checkpoint).
    """

    def __init__(self, *, batch_writes: bool = True) -> None:
        self._local = threading.local()
        #: Coalesces this process's transitions on Postgres (jobs.ledger_writer).
        self.writer = LedgerWriter() if batch_writes else None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.writer is not None:
            add_fetch_listener(broker, self)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        remove_fetch_listener(broker, self)
        if self.writer is not None:
            self.writer.close()  # commits the outcomes still pending, opening their ack gates
        acker = getattr(broker, "acker", None)
        if acker is not None:
            acker.flush()
        # Dramatiq closes the process's log pipe soon after: nothing may wait for a batch now.
        logging_write_through()

    def give_back(self, messages: list[Any]) -> None:
        release_claims_ahead(messages)

    def take_ahead(self, messages: list[Any]) -> None:
        """Claim the messages a consumer just fetched, without waiting (a fetch listener).

        Their claims are written with the process's next ledger batch while
        the messages wait for a job thread, so a job thread seldom waits for
        its claim: that wait was most of a short job's time. A claimed
        message that does not run here after all (deferred, dead-lettered
        before the ledger, put back at shutdown) gives its claim back
        (:func:`release_claims_ahead`). Delayed messages are not claimed.
        """
        if self.writer is None or not uses_postgres_fast_path():
            return
        # Not delayed ones, nor those fairness could not give a slot (they are deferred).
        ready = [
            m
            for m in messages
            if not m.queue_name.endswith(".DQ") and not getattr(m, "jobs_slot_refused", False)
        ]
        if not ready:
            return
        me, now = worker_id(), time.monotonic()
        pendings = self.writer.start_later([(m.message_id, me) for m in ready])
        for message, pending in zip(ready, pendings, strict=True):
            message.jobs_claim = pending
            message.jobs_claimed_at = now

    def _start(self, job_id: str, claimed_ahead: Any = None) -> StartDecision:
        if claimed_ahead is not None:
            attempt = claimed_ahead.wait()
        elif self.writer is None or not uses_postgres_fast_path():
            return job_attempt_start(job_id=job_id, worker_id=worker_id())
        else:
            attempt = self.writer.start(job_id=job_id, worker_id=worker_id())
        if attempt is not None:
            return StartDecision(StartVerdict.RUN, attempt=attempt)
        return job_start_refused(job_id=job_id)

    def _finish(self, ctx: JobContext, end: AttemptEnd) -> bool:
        if self.writer is None or not uses_postgres_fast_path():
            return job_attempt_finish(job_id=ctx.job_id, attempt=ctx.attempt, end=end)
        return self.writer.finish(job_id=ctx.job_id, attempt=ctx.attempt, end=end)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        job_id = message.message_id
        claimed_ahead = getattr(message, "jobs_claim", None)
        message.jobs_claim = None  # taken over: from here on this middleware closes it
        try:
            decision = self._start(job_id, claimed_ahead)
            if decision.verdict is StartVerdict.MISSING:
                actor = broker.get_actor(message.actor_name)
                job_adopt_message(
                    job_id=job_id,
                    job_type=message.actor_name,
                    queue=actor.queue_name,
                    payload=dict(message.kwargs),
                    organization_id=message.options.get("organization_id"),
                )
                decision = self._start(job_id)
        except DatabaseError:
            logger.exception(
                "The ledger is unreachable; message %s will be delivered again in %d ms.",
                job_id,
                DATABASE_DOWN_DELAY_MS,
            )
            broker.enqueue(message.copy(), delay=DATABASE_DOWN_DELAY_MS)
            raise SkipMessage("ledger unreachable") from None

        if decision.verdict is StartVerdict.POISON:
            logger.error(
                "Job %s failed as a poison message: its worker died %d or more times "
                "while running it. Dead-lettering its message.",
                job_id,
                jobs_settings.poison_threshold,
            )
            message.fail()
            raise SkipMessage("poison message")
        if decision.verdict is StartVerdict.RUNNING and _may_be_early_retry(message):
            # Retries re-enqueues before this middleware records `retrying`; when
            # that write is slow (a database hiccup), the retry can arrive while
            # the row still says `running`. Wait for the write instead of dropping it.
            deferrals = int(message.options.get("ledger_deferrals", 0))
            delay = min(1_000 * 2**deferrals, 30_000)
            logger.info("Job %s still looks running; its retry waits %d ms.", job_id, delay)
            broker.enqueue(message.copy(options={"ledger_deferrals": deferrals + 1}), delay=delay)
            raise SkipMessage("retry before its attempt was recorded")
        if decision.verdict is not StartVerdict.RUN:
            logger.info("Job %s is %s; acknowledging without running.", job_id, decision.verdict)
            raise SkipMessage(f"job {decision.verdict}")

        ctx = JobContext(
            job_id=job_id,
            job_type=message.actor_name,
            organization_id=message.options.get("organization_id"),
            attempt=decision.attempt,
            retries=int(message.options.get("retries", 0)),
            # Claimed at fetch, it may have waited behind long jobs: a cancel
            # requested meanwhile stops it before its code runs.
            checkpoint_first=claimed_ahead is not None
            and time.monotonic() - getattr(message, "jobs_claimed_at", 0.0)
            > CANCEL_CHECK_AFTER_SECONDS,
        )
        self._local.state = (
            ctx,
            set_current_job(ctx),
            bind_log_context(attempt=decision.attempt),
            time.monotonic(),
        )
        # DEBUG: the line that ends the attempt carries its number and duration, and
        # the ledger its start; a second INFO line per job cost a tenth of a no-op's CPU.
        logger.debug("Job %s started (attempt %d).", job_id, decision.attempt)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        state: tuple[JobContext, Token[Any], Token[Any], float] | None = getattr(
            self._local, "state", None
        )
        if state is None:
            release_claims_ahead([message])  # a middleware before the ledger raised
            return
        self._local.state = None
        ctx, job_token, log_token, started = state
        try:
            end = _attempt_end(ctx, message, exception)
            if self.writer is not None and not message.failed and uses_postgres_fast_path():
                self._finish_later(ctx, end, started, message)
            else:
                changed = self._finish_with_retries(ctx, end)
                _log_end(ctx, end, changed, started)
        finally:
            reset_current_job(job_token)
            unbind_log_context(log_token)

    def _finish_later(self, ctx: JobContext, end: AttemptEnd, started: float, message: Any) -> None:
        """Hand the outcome to the writer and move on; the message's ack waits for the commit.

        The job thread takes its next message while the writer commits this
        one's outcome (with the next batch); the consumer hands the ack to the
        acker only once the gate opens, so a message is never acknowledged
        before its outcome is in the ledger. A database error delays the
        commit (and the ack), never loses it. Dead-lettered messages take the
        synchronous path: their nack is not gated.
        """
        gate = AckGate()
        message.jobs_ack_gate = gate
        # Logged here, not once committed: formatting the line on the writer's
        # thread was a fifth of what held up every batch. The writer retries
        # until the outcome is committed; the rare outcome that no longer
        # applies (the job moved on meanwhile) gets a second line.
        _log_end(ctx, end, True, started)
        context = contextvars.copy_context()  # the job's log context, for that second line

        def committed(pending: Any) -> None:
            try:
                if not pending.result:
                    context.run(_log_end, ctx, end, False, started)
            finally:
                gate.open()

        assert self.writer is not None
        self.writer.finish_later(
            job_id=ctx.job_id, attempt=ctx.attempt, end=end, callback=committed
        )

    def _finish_with_retries(self, ctx: JobContext, end: AttemptEnd) -> bool:
        """Record the end of an attempt, riding out a short database outage.

        The message has already been acknowledged or re-enqueued, so giving up
        would leave the row ``running``; a few reconnecting tries over about
        fifteen seconds cover a failover or a restart.
        """
        for delay in FINISH_RETRY_DELAYS:
            try:
                return self._finish(ctx, end)
            except DatabaseError as exc:
                logger.warning(
                    "Could not record the end of job %s (%s); trying again in %.1f s.",
                    ctx.job_id,
                    exc,
                    delay,
                )
                connection.close()
                time.sleep(delay)
        return self._finish(ctx, end)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        release_claims_ahead([message])  # skipped before the ledger took its claim over
        # Only reached with a claimed job if a middleware inside the ledger skipped it.
        state = getattr(self._local, "state", None)
        if state is not None:
            logger.warning("Job %s was skipped after it was claimed.", message.message_id)
            self.after_process_message(broker, message, exception=SkipMessage("skipped"))


def release_claims_ahead(messages: Any) -> None:
    """Give back the claims taken at fetch (:meth:`Ledger.take_ahead`) of messages that
    will not run here: before a middleware defers, dead-letters or cancels one, and
    for those a stopping worker puts back on their queue.

    Waits for each claim's own write, then undoes the claimed ones in one
    statement, so the row is waiting again before anything else touches it
    or another worker receives its message. Messages without such a claim
    (or whose claim the ledger middleware took over) are ignored.
    """
    claims: list[tuple[str, int]] = []
    for message in messages:
        pending = getattr(message, "jobs_claim", None)
        if pending is None:
            continue
        message.jobs_claim = None
        try:
            attempt = pending.wait()
        except Exception:  # its batch failed and was rolled back: nothing to give back
            attempt = None
        if attempt is not None:
            claims.append((message.message_id, attempt))
    if not claims:
        return
    for delay in (*FINISH_RETRY_DELAYS, None):
        try:
            job_attempts_release(claims)
            return
        except DatabaseError as exc:
            connection.close()
            if delay is None:
                # The recovery loop marks the attempts lost once this worker is gone.
                logger.error("Could not give back the claims of %d job(s): %s", len(claims), exc)
                return
            time.sleep(delay)


def _log_end(ctx: JobContext, end: AttemptEnd, changed: bool, started: float) -> None:
    timing = {"duration_seconds": round(time.monotonic() - started, 3)}
    if changed:
        logger.info(
            "Job %s %s after attempt %d (%.3f s).",
            ctx.job_id,
            end.status,
            ctx.attempt,
            timing["duration_seconds"],
            extra=timing,
        )
    else:
        logger.info(
            "Attempt %d of job %s ended (%s); the job had already moved on, so the ledger "
            "keeps its newer state.",
            ctx.attempt,
            ctx.job_id,
            end.outcome,
            extra=timing,
        )


#: How often a retry that finds its job still ``running`` waits before it is dropped.
MAX_LEDGER_DEFERRALS = 8


def _may_be_early_retry(message: Any) -> bool:
    return (
        int(message.options.get("retries", 0)) > 0
        and int(message.options.get("ledger_deferrals", 0)) < MAX_LEDGER_DEFERRALS
    )


def _attempt_end(ctx: JobContext, message: Any, exception: BaseException | None) -> AttemptEnd:
    if ctx.cancelled:
        return AttemptEnd(
            status=JobStatus.CANCELLED,
            outcome=AttemptOutcome.CANCELLED,
            error_type="JobCancelled",
            error_message="Cancelled on request while running.",
        )
    if exception is None and not message.failed:
        return AttemptEnd(
            status=JobStatus.SUCCEEDED,
            outcome=AttemptOutcome.SUCCEEDED,
            result_json=ctx.result_json,
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
    if message.failed:
        if exception is not None and not _is_permanent(exception):
            error_message = f"{error_message} (retries exhausted after {ctx.attempt} attempts)"
        return AttemptEnd(
            status=JobStatus.FAILED,
            outcome=outcome,
            error_type=error_type,
            error_message=error_message,
            error_traceback=tb,
        )
    return AttemptEnd(
        status=JobStatus.RETRYING,
        outcome=outcome,
        error_type=error_type,
        error_message=error_message,
        error_traceback=tb,
    )


def _is_permanent(exception: BaseException) -> bool:
    from jobs.errors import PermanentJobError

    return isinstance(exception, PermanentJobError)


def _describe(exception: BaseException) -> str:
    text = str(exception)
    if not text:
        if isinstance(exception, SoftTimeLimitExceeded):
            text = "The job ran past its soft time limit."
        elif isinstance(exception, TimeLimitExceeded):
            text = "The job ran past its hard time limit and was interrupted."
        else:
            text = type(exception).__name__
    return text[:_MAX_ERROR_MESSAGE]
