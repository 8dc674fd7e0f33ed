"""Maps each delivery onto the Postgres ledger: one attempt row, forward-only job status."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from contextvars import Token
from datetime import UTC, datetime
from typing import Any

import dramatiq
from django.db import DatabaseError
from dramatiq.middleware import Middleware, SkipMessage

from jobs.conf import jobs_settings
from jobs.logging import bind_log_context, logging_write_through, unbind_log_context
from jobs.runtime import JobContext, reset_current_job, set_current_job
from jobs.services.ledger_writer import LedgerWriter, log_attempt_end, release_claims_ahead
from jobs.services.outbox import outbox_forget_flush
from jobs.services.transitions import (
    AttemptEnd,
    StartDecision,
    StartVerdict,
    attempt_end,
    job_adopt_message,
    job_claim_reply_lost,
    job_start_refused,
)
from jobs.transport.acks import AckGate
from jobs.transport.broker import add_fetch_listener, remove_fetch_listener, worker_id

logger = logging.getLogger(__name__)

#: How long a message waits before another try when the database is unreachable.
DATABASE_DOWN_DELAY_MS = 5_000

#: A job claimed at fetch that waited longer than this for a job thread looks
#: for a cancel request (one query) before its code runs.
CANCEL_CHECK_AFTER_SECONDS = 0.5

#: How often a retry that finds its job still ``running`` waits before it is dropped.
MAX_LEDGER_DEFERRALS = 8


class Ledger(Middleware):
    """Records every delivery in the ledger and decides whether it runs.

    - at fetch: claim what a consumer fetched in the next ledger batch (:meth:`take_ahead`);
    - before: take that claim over (``running``, attempt +1, an open attempt
      row). A finished or running job is acknowledged without running (a
      duplicate); a pending cancel cancels it; a job whose worker died too
      often fails as poison; a message without a row gets one (``actor.send``);
    - after: hand the outcome to the writer; the message's ack waits for its commit.

    The writes are :mod:`jobs.services.ledger_writer` and :mod:`jobs.services.transitions`.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        #: Coalesces this process's transitions on Postgres (one statement per batch).
        self.writer = LedgerWriter()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        add_fetch_listener(broker, self)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        remove_fetch_listener(broker, self)
        self.writer.close()  # commits the outcomes still pending, opening their ack gates
        acker = getattr(broker, "acker", None)
        if acker is not None:
            acker.flush()
        outbox_forget_flush()  # the outbox rows of jobs that jobs submitted
        # Dramatiq closes the process's log pipe soon after: nothing may wait for a batch now.
        logging_write_through()

    def take_ahead(self, messages: list[Any]) -> None:
        """Claim the messages a consumer just fetched, without waiting (a fetch listener).

        One that does not run here after all gives its claim back
        (:func:`release_claims_ahead`). Delayed messages, and those fairness
        refused a slot (they are deferred), are not claimed.
        """
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

    def give_back(self, messages: list[Any]) -> None:
        release_claims_ahead(messages)

    def _start(self, job_id: str, claimed_ahead: Any = None) -> StartDecision:
        if claimed_ahead is not None:
            attempt = claimed_ahead.wait()
        else:
            attempt = self.writer.start(job_id=job_id, worker_id=worker_id())
        if attempt is not None:
            return StartDecision(StartVerdict.RUN, attempt=attempt)
        return job_start_refused(job_id=job_id)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        job_id = message.message_id
        claimed_ahead = getattr(message, "jobs_claim", None)
        message.jobs_claim = None  # taken over: from here on this middleware closes it
        try:
            decision = self._start(job_id, claimed_ahead)
            if decision.verdict is StartVerdict.MISSING:
                job_adopt_message(
                    job_id=job_id,
                    job_type=message.actor_name,
                    queue=broker.get_actor(message.actor_name).queue_name,
                    payload=dict(message.kwargs),
                    organization_id=message.options.get("organization_id"),
                )
                decision = self._start(job_id)
            claimant = message.options.get("ledger_claimant")
            if (
                decision.verdict is StartVerdict.RUNNING
                and claimant
                and job_claim_reply_lost(
                    job_id=job_id,
                    claimant=claimant,
                    failed_at=datetime.fromtimestamp(
                        message.options.get("ledger_claim_failed_at", 0), tz=UTC
                    ),
                )
            ):
                logger.info(
                    "Job %s: its earlier claim committed unheard; claiming it again.", job_id
                )
                decision = self._start(job_id)
        except DatabaseError as exc:
            # One line per message, not a traceback each: an outage would flood the log.
            logger.warning(
                "Could not reach the ledger (%s: %s); message %s will be delivered again in %d ms.",
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail",
                job_id,
                DATABASE_DOWN_DELAY_MS,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            # The claim may have committed unheard: the next delivery checks (above).
            retry = message.copy(
                options={"ledger_claimant": worker_id(), "ledger_claim_failed_at": time.time()}
            )
            broker.enqueue(retry, delay=DATABASE_DOWN_DELAY_MS)
            raise SkipMessage("ledger unreachable") from None
        self._refuse_unless_run(broker, message, decision)
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
        # DEBUG: the line that ends the attempt carries its number and duration.
        logger.debug("Job %s started (attempt %d).", job_id, decision.attempt)

    @staticmethod
    def _refuse_unless_run(broker: dramatiq.Broker, message: Any, decision: StartDecision) -> None:
        job_id = message.message_id
        if decision.verdict is StartVerdict.POISON:
            logger.error(
                "Job %s failed as a poison message: its worker died %d or more times "
                "while running it. Dead-lettering its message.",
                job_id,
                jobs_settings.poison_threshold,
            )
            message.fail()
            raise SkipMessage("poison message")
        deferrals = int(message.options.get("ledger_deferrals", 0))
        if (
            decision.verdict is StartVerdict.RUNNING
            and int(message.options.get("retries", 0)) > 0
            and deferrals < MAX_LEDGER_DEFERRALS
        ):
            # Retries re-enqueues before this middleware records `retrying`; when
            # that write is slow (a database hiccup), the retry can arrive while
            # the row still says `running`. Wait for the write instead of dropping it.
            delay = min(1_000 * 2**deferrals, 30_000)
            logger.info("Job %s still looks running; its retry waits %d ms.", job_id, delay)
            broker.enqueue(message.copy(options={"ledger_deferrals": deferrals + 1}), delay=delay)
            raise SkipMessage("retry before its attempt was recorded")
        if decision.verdict is not StartVerdict.RUN:
            logger.info("Job %s is %s; acknowledging without running.", job_id, decision.verdict)
            raise SkipMessage(f"job {decision.verdict}")

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
            end = attempt_end(
                cancelled=ctx.cancelled,
                result_json=ctx.result_json,
                exception=exception,
                failed=message.failed,
                attempt=ctx.attempt,
                retry_sent=not getattr(message, "jobs_retry_unsent", False),
                # Set by Retries just before it sends: a data loss after this instant
                # may have taken the retry, and the recovery loop compares against it.
                retry_sent_ms=message.options.get("requeue_timestamp"),
            )
            if message.failed:
                # A dead-lettered message's nack is not gated: its outcome is written first.
                changed = self.writer.finish_and_wait(
                    job_id=ctx.job_id, attempt=ctx.attempt, end=end
                )
                log_attempt_end(ctx.job_id, ctx.attempt, end, changed=changed, started=started)
            else:
                self._finish_later(ctx, end, started, message)
        finally:
            reset_current_job(job_token)
            unbind_log_context(log_token)

    def _finish_later(self, ctx: JobContext, end: AttemptEnd, started: float, message: Any) -> None:
        """Hand the outcome to the writer and move on; the message's ack waits for the commit.

        The writer retries until it is committed: a database error delays the
        commit (and the ack), never loses it. The end line is logged here, off
        the writer's thread; an outcome that no longer applies gets a second line.
        """
        gate = AckGate()
        message.jobs_ack_gate = gate
        log_attempt_end(ctx.job_id, ctx.attempt, end, changed=True, started=started)
        context = contextvars.copy_context()  # the job's log context, for that second line

        def committed(pending: Any) -> None:
            try:
                if not pending.result:
                    context.run(log_attempt_end, ctx.job_id, ctx.attempt, end, False, started)
            finally:
                gate.open()

        self.writer.finish_later(
            job_id=ctx.job_id, attempt=ctx.attempt, end=end, callback=committed
        )

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        release_claims_ahead([message])  # skipped before the ledger took its claim over
        # Only reached with a claimed job if a middleware inside the ledger skipped it.
        if getattr(self._local, "state", None) is not None:
            logger.warning("Job %s was skipped after it was claimed.", message.message_id)
            self.after_process_message(broker, message, exception=SkipMessage("skipped"))
