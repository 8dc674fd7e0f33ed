"""The outbox of submissions: which committed jobs still wait for their send to Redis.

Once a submission's messages are in Redis its outbox row means nothing, but
deleting it is a Postgres round trip and a commit. The submitting thread does
not wait for that: it hands the row's id to the process's *forgetter*
(:func:`job_outbox_forget`), a background thread that deletes the ids handed
to it in batches, on its own connection, with ``synchronous_commit`` off (a
row lost to a Postgres crash is sent again by the relay, which the ledger
skips). If the forgetter cannot delete a batch after a few tries, or the
process dies first, the rows stay for the outbox relay: it considers only rows
older than ``JOBS_OUTBOX_GRACE_MS`` and sends only their jobs still
``queued``; a job whose message is in Redis twice runs once (the ledger
acknowledges a delivery of a running or finished job without running it).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

from django.db import DatabaseError, connection

from jobs.background import BackgroundThread
from jobs.conf import jobs_settings
from jobs.models import JobOutbox

logger = logging.getLogger(__name__)

#: How long the forgetter stays idle before it closes its connection and its thread ends.
IDLE_SECONDS = 2.0
#: Pauses between tries of a batch; after the last, its rows are left to the relay.
RETRY_DELAYS = (0.1, 0.5)
#: Most ids in one DELETE.
MAX_BATCH = 1_000


def _delete_sql() -> str:
    return (
        f"DELETE FROM {connection.ops.quote_name(JobOutbox._meta.db_table)} "  # noqa: S608
        "WHERE id = ANY(%s)"
    )


def job_outbox_delete(*, outbox_id: int) -> None:
    """Forget a submission's outbox row now, on the caller's connection (the relay's way).

    A failure is logged, not raised: the messages are in Redis, and at worst
    the recovery loop sends them again, which the ledger skips.
    """
    try:
        # Plain SQL: QuerySet.delete() collects related objects and sends signals first,
        # which cost more CPU than the rest of a single submission's database work.
        with connection.cursor() as cursor:
            cursor.execute(_delete_sql(), [[outbox_id]])
    except DatabaseError as exc:
        logger.warning(
            "Could not delete outbox row %s after its send (%s); the recovery loop will "
            "send its jobs again and the ledger will skip the duplicates.",
            outbox_id,
            exc,
        )


class OutboxForgetter(BackgroundThread):
    """The per-process thread that deletes sent submissions' outbox rows in batches.

    Thread-safe. The thread starts with the first id, deletes what piled up
    within ``JOBS_OUTBOX_DELETE_LINGER_MS`` in one statement, and ends
    (closing its connection) after ``idle_seconds`` without work;
    :meth:`flush` deletes what is pending and ends it at once.

    Parameters:
      idle_seconds: idle time before the thread closes its connection and ends, in seconds.
    """

    def __init__(self, *, idle_seconds: float = IDLE_SECONDS) -> None:
        super().__init__("outbox-forgetter")
        self.idle_seconds = idle_seconds
        self._ids: list[int] = []
        self._busy = False
        self._tuned: object = None
        #: Rows deleted and statements run, for tests and the curious.
        self.deleted = 0
        self.batches = 0

    def forget(self, outbox_id: int) -> None:
        """Delete this outbox row soon, off the caller's path."""
        with self._cond:
            self._ids.append(outbox_id)
            self._ensure_started()
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Delete every id handed over so far, then end the thread (it starts again if used)."""
        self._stop(timeout)

    def pending(self) -> int:
        """Ids handed over and not yet deleted (or given up)."""
        with self._cond:
            return len(self._ids) + (1 if self._busy else 0)

    def _run(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._cond:
                    if not self._ids and not self._closing:
                        self._cond.wait(self.idle_seconds)
                    if not self._ids:
                        if self._thread is me:
                            self._thread = None  # idle or closing: a new id starts a new thread
                        return
                    if not self._closing:
                        # Linger: the ids of other threads' sends join this batch.
                        began = time.monotonic()
                        while not self._closing:
                            linger = jobs_settings.outbox_delete_linger_ms / 1000
                            left = began + linger - time.monotonic()
                            if left <= 0:
                                break
                            self._cond.wait(left)
                    batch = self._ids[:MAX_BATCH]
                    del self._ids[:MAX_BATCH]
                    if not batch:
                        continue
                    self._busy = True
                try:
                    self._delete(batch)
                finally:
                    with self._cond:
                        self._busy = False
        finally:
            connection.close()

    def _delete(self, ids: list[int]) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                self._tune_session()
                with connection.cursor() as cursor:
                    cursor.execute(_delete_sql(), [ids])
                self.deleted += len(ids)
                self.batches += 1
                return
            except DatabaseError as exc:
                connection.close()  # reconnect for the next try
                if delay is None:
                    logger.warning(
                        "Could not delete %d sent submissions' outbox rows (%s); the recovery "
                        "loop will send their jobs again and the ledger will skip the "
                        "duplicates.",
                        len(ids),
                        exc,
                    )
                    return
                time.sleep(delay)

    def _tune_session(self) -> None:
        """``synchronous_commit`` off on this thread's connection: nothing waits for the flush.

        No health check (Django's ``SELECT 1``) before a batch: a broken
        connection fails the DELETE, which is closed and tried again.
        """
        connection.ensure_connection()
        raw = connection.connection
        if raw is not self._tuned:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            self._tuned = raw


_forgetter = OutboxForgetter()


def outbox_forgetter() -> OutboxForgetter:
    """This process's forgetter."""
    return _forgetter


def job_outbox_forget(*, outbox_id: int) -> None:
    """Delete a sent submission's outbox row in the background (see the module's docstring)."""
    _forgetter.forget(outbox_id)


def outbox_forget_flush(timeout: float = 10.0) -> None:
    """Delete the outbox rows handed to the forgetter so far, and end its thread.

    The worker's shutdown, interpreter exit and the test suite call it.
    """
    _forgetter.flush(timeout)


atexit.register(outbox_forget_flush)
