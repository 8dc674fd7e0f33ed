"""Coalesces a worker process's ledger writes: one statement for many transitions.

Each worker thread used to claim and close its job with its own statements,
two round trips and two commits per job, and Postgres planned every one of
them again. A process now has one writer
thread. Worker threads hand it their transition and wait for the answer; it
takes whatever has piled up since its last statement and writes it at once:

- every pending *finish* and *start* in one prepared statement
  (:func:`job_transitions_write`): one round trip and one commit;
- a job appears once per batch: a start whose job also has a finish pending
  (the retry of an attempt that is just ending) waits for the next batch, so
  the attempt is closed before the job is claimed again;
- no waiting for a batch to fill: a lone transition is written at once, and
  under load a batch is what arrived during the previous one.

A thread still learns whether its delivery was claimed before it runs the
job, and a database error reaches it as before. Its outcome it may hand over
without waiting (:meth:`LedgerWriter.finish_later`): the writer retries that
one until it is committed, then calls back (the ledger middleware opens the
message's ack gate there, so the ack never precedes the outcome).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection

from jobs.background import BackgroundThread
from jobs.outages import POSTGRES
from jobs.services.transitions import AttemptEnd, job_attempts_release, job_transitions_write

logger = logging.getLogger(__name__)

#: Most transitions of one kind written by one statement.
MAX_BATCH = 500

#: Pauses before a deferred finish is written again after a database error (the last repeats).
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)

#: A connection used this recently is trusted without Django's ``SELECT 1`` probe.
RECENT_USE_SECONDS = 1.0

#: Pauses between tries to give back claims while the database is unreachable.
RELEASE_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


class _Pending:
    """One transition waiting for the writer: its key (a job id), its data, its answer."""

    __slots__ = ("callback", "data", "done", "error", "job_id", "not_before", "result", "tries")

    def __init__(
        self, job_id: str, data: Any, callback: Callable[[_Pending], None] | None = None
    ) -> None:
        self.job_id = job_id
        self.data = data
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        #: Called by the writer once written; such a transition is retried until it is.
        self.callback = callback
        self.not_before = 0.0  # monotonic time before which a retried one waits
        self.tries = 0

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            # Every waiter of a failed batch raises its own copy of the error.
            raise copy.copy(self.error) from self.error
        return self.result


class LedgerWriter(BackgroundThread):
    """The per-process writer thread of the ledger's start and finish transitions.

    Thread-safe. The thread starts with the first transition and stops with
    :meth:`close` (the worker's shutdown), after writing what is pending.
    """

    def __init__(self, *, max_batch: int = MAX_BATCH) -> None:
        super().__init__("ledger-writer")
        self.max_batch = max_batch
        self._starts: list[_Pending] = []
        self._finishes: list[_Pending] = []
        self._last_ok = 0.0
        self._tuned: object = None  # the connection _tune_session last set up
        #: Statements written and transitions in them, for tests and the curious.
        self.batches = 0
        self.transitions = 0

    def start(self, *, job_id: str, worker_id: str) -> int | None:
        """Claim a delivery: its attempt number, or None if it was not claimed."""
        result: int | None = self._submit(self._starts, _Pending(job_id, worker_id)).wait()
        return result

    def start_later(self, deliveries: list[tuple[str, str]]) -> list[_Pending]:
        """Claim deliveries ``(job_id, worker_id)`` without waiting: one pending claim each.

        The consumer claims what it fetched this way (:meth:`Ledger.take_ahead`),
        so the claims are committed while the messages wait for a job thread;
        ``pending.wait()`` is then the attempt number, or None if not claimed.
        """
        pendings = [_Pending(job_id, worker_id) for job_id, worker_id in deliveries]
        if pendings:
            with self._cond:
                self._ensure_started()
                self._starts.extend(pendings)
                self._cond.notify()
        return pendings

    def finish(self, *, job_id: str, attempt: int, end: AttemptEnd) -> bool:
        """Close an attempt; whether the job row moved."""
        return bool(self._submit(self._finishes, _Pending(job_id, (attempt, end))).wait())

    def finish_and_wait(self, *, job_id: str, attempt: int, end: AttemptEnd) -> bool:
        """:meth:`finish`, trying again through a short database outage (about 15 s).

        For outcomes that must be committed before the worker moves on (a
        dead-lettered message's nack is not gated on the commit).
        """
        for delay in (*RETRY_DELAYS, None):
            try:
                return self.finish(job_id=job_id, attempt=attempt, end=end)
            except DatabaseError as exc:
                if delay is None:
                    raise
                logger.warning(
                    "Could not record the end of job %s (%s); trying again in %.1f s.",
                    job_id,
                    exc,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def finish_later(
        self,
        *,
        job_id: str,
        attempt: int,
        end: AttemptEnd,
        callback: Callable[[_Pending], None],
    ) -> None:
        """Close an attempt without waiting: ``callback(pending)`` runs on the writer thread
        once it is committed (``pending.result``: whether the job row moved).

        A database error does not lose it: it is written again, after
        :data:`RETRY_DELAYS`, until it is.
        """
        self._submit(self._finishes, _Pending(job_id, (attempt, end), callback))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is pending, then stop the thread (it starts again if used again)."""
        self._stop(timeout)

    # --- the writer thread ---------------------------------------------------------

    def _submit(self, bucket: list[_Pending], pending: _Pending) -> _Pending:
        with self._cond:
            self._ensure_started()
            bucket.append(pending)
            self._cond.notify()
        return pending

    def _take(self, bucket: list[_Pending], seen: set[str]) -> list[_Pending]:
        """Up to ``max_batch`` pending transitions of jobs not in ``seen``; the rest wait."""
        if not bucket:
            return []
        taken: list[_Pending] = []
        left: list[_Pending] = []
        now = time.monotonic()
        for pending in bucket:
            if pending.not_before > now:  # a retry waiting for its time holds its job back
                seen.add(pending.job_id)
                left.append(pending)
            elif len(taken) < self.max_batch and pending.job_id not in seen:
                seen.add(pending.job_id)
                taken.append(pending)
            else:
                left.append(pending)
        bucket[:] = left
        return taken

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while True:
                        seen: set[str] = set()
                        finishes = self._take(self._finishes, seen)
                        starts = self._take(self._starts, seen)
                        if finishes or starts:
                            break
                        if not self._finishes and not self._starts:
                            if self._closing:
                                return  # nothing left to write
                            self._cond.wait()
                        else:  # only retries waiting for their time
                            wake = min(p.not_before for p in self._finishes + self._starts)
                            self._cond.wait(max(0.001, wake - time.monotonic()))
                self._write(finishes, starts)
        except BaseException as exc:  # never leave a waiting thread hanging
            logger.exception("The ledger writer stopped unexpectedly.")
            with self._cond:
                stranded = self._starts + self._finishes
                self._starts, self._finishes = [], []
            for pending in stranded:
                pending.error = exc
                pending.done.set()
            raise
        finally:
            connection.close()

    def _write(self, finishes: list[_Pending], starts: list[_Pending]) -> None:
        batch = finishes + starts
        try:
            if time.monotonic() - self._last_ok >= RECENT_USE_SECONDS:
                # Idle for a while: let Django drop an errored or aged connection,
                # and probe the one it keeps before the next statement.
                connection.close_if_unusable_or_obsolete()
            self._tune_session()
            moved, claimed = job_transitions_write(
                finishes=[(p.job_id, p.data[0], p.data[1]) for p in finishes],
                starts=[(p.job_id, p.data) for p in starts],
            )
        except Exception as exc:
            connection.close()  # reconnect for the next batch
            if isinstance(exc, DatabaseError):
                POSTGRES.failed(exc)
            retried = [p for p in batch if p.callback is not None]
            for pending in retried:
                delay = RETRY_DELAYS[min(pending.tries, len(RETRY_DELAYS) - 1)]
                pending.tries += 1
                pending.not_before = time.monotonic() + delay
            if retried:
                logger.warning(
                    "Could not record the end of %d job(s) (%s); trying again in %.1f s.",
                    len(retried),
                    exc,
                    RETRY_DELAYS[min(retried[0].tries - 1, len(RETRY_DELAYS) - 1)],
                )
                with self._cond:
                    self._finishes[:0] = retried
            for pending in batch:
                if pending.callback is None:
                    pending.error = exc
                    pending.done.set()
            return
        self._last_ok = time.monotonic()
        POSTGRES.recovered()
        self.batches += 1
        self.transitions += len(batch)
        for pending in finishes:
            pending.result = pending.job_id in moved
            pending.done.set()
            if pending.callback is not None:
                try:
                    pending.callback(pending)
                except Exception:
                    logger.exception("The callback of job %s's finish failed.", pending.job_id)
        for pending in starts:
            pending.result = claimed.get(pending.job_id)
            pending.done.set()

    def _tune_session(self) -> None:
        """Make this thread's connection find rows by key, whatever its statistics say.

        The writer's connection runs nothing but the batch statements, which
        always touch a few rows by job id. Right after a table grew from
        empty (a fresh deployment, a burst after a purge), the planner still
        believes it tiny and scans it whole for every batch; a prepared plan
        then keeps doing so for the connection's life. Seq scans are made a
        last resort on this one connection only.
        """
        connection.ensure_connection()
        raw = connection.connection
        if raw is not self._tuned:
            with connection.cursor() as cursor:
                cursor.execute("SET enable_seqscan = off")
            self._tuned = raw


def release_claims_ahead(messages: Any) -> None:
    """Give back the claims taken at fetch (``Ledger.take_ahead``) of messages that will
    not run here: before a middleware defers, dead-letters or cancels one, and for
    those a stopping worker puts back on their queue.

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
    for delay in (*RELEASE_RETRY_DELAYS, None):
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


def log_attempt_end(
    job_id: str, attempt: int, end: AttemptEnd, changed: bool, started: float
) -> None:
    """The line that ends an attempt (its outcome and duration since ``started``, monotonic).

    ``changed=False``: the outcome no longer applied, because the job had moved on.
    """
    seconds = round(time.monotonic() - started, 3)
    if changed:
        logger.info(
            "Job %s %s after attempt %d (%.3f s).",
            job_id,
            end.status,
            attempt,
            seconds,
            extra={"duration_seconds": seconds},
        )
    else:
        logger.info(
            "Attempt %d of job %s ended (%s); the job had already moved on, so the ledger "
            "keeps its newer state.",
            attempt,
            job_id,
            end.outcome,
            extra={"duration_seconds": seconds},
        )
