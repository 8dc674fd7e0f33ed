"""Log context and redaction.

Every log line of a job carries its id, organization, actor and attempt, and
no line carries a secret: :class:`RedactSecretsFilter` scrubs API keys,
tokens, passwords and authorization headers from messages and extras.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import weakref
from contextvars import ContextVar, Token
from multiprocessing import util as multiprocessing_util
from typing import Any, TextIO

from django.http import HttpRequest

from jobs.redaction import redact, redact_text, redact_url

_EMPTY: dict[str, Any] = {}
_log_context: ContextVar[dict[str, Any]] = ContextVar("jobs_log_context", default=_EMPTY)

#: Fields the filter always sets, so formatters may name them.
CONTEXT_FIELDS = ("job_id", "organization_id", "actor", "attempt")


def bind_log_context(**fields: Any) -> Token[dict[str, Any]]:
    """Add fields to the log context of this thread (or task) until the token is reset."""
    return _log_context.set({**_log_context.get(), **fields})


def unbind_log_context(token: Token[dict[str, Any]]) -> None:
    _log_context.reset(token)


class JobContextFilter(logging.Filter):
    """Copy the log context onto each record (``-`` where a field is unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _log_context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            setattr(record, name, "-" if value is None else value)
        return True


# --- Secret redaction ---------------------------------------------------------

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RedactSecretsFilter(logging.Filter):
    """Scrub secrets from a record's message, arguments, extras and traceback before it is written.

    The message is formatted here (``record.msg % record.args``) so a secret
    passed as an argument is caught too; the traceback is rendered and scrubbed
    into ``exc_text``. A request in the extras (``django.request`` passes one)
    becomes ``"GET /path?query"`` with secret query values redacted: a
    formatter would write its repr, the query string as sent.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; let the formatter report it as usual
            return True
        record.msg = redact_text(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name in _RECORD_ATTRS or name in CONTEXT_FIELDS:
                continue
            if isinstance(value, HttpRequest):
                setattr(record, name, _request_summary(value))
            else:
                setattr(record, name, redact(value, key=name))
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _request_summary(request: HttpRequest) -> str:
    try:
        return f"{request.method} {redact_url(request.get_full_path())}"
    except Exception:  # a request too broken to describe: say only what it is
        return f"<{type(request).__name__}>"


class DeferredSkipFilter(logging.Filter):
    """Drop Dramatiq's per-skip warning: deferrals and duplicate deliveries are expected.

    Our middleware logs each skip itself, with the reason, at a fitting level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Message %s was skipped."


# --- Batched writes ---------------------------------------------------------------


class BatchingStreamHandler(logging.StreamHandler):
    """A ``StreamHandler`` whose ``DEBUG`` and ``INFO`` lines one thread writes, many per write.

    A worker process logs a line at the end of every job. Written one by one,
    each line took the handler's lock across a write to Dramatiq's log pipe,
    and the job threads queued on that lock and on the GIL behind it; the
    parent process forwards every pipe message (bench/HISTORY.md). Each line is still formatted, and
    its secrets redacted, by the thread that logs it; a writer thread then
    writes whatever piled up meanwhile in one write.

    - A ``WARNING`` or worse is written before ``emit`` returns, after the
      lines still pending (the order is kept): a crash right after a failure
      loses none of its lines. Only ``INFO`` and ``DEBUG`` lines of the last
      moment (a millisecond or so) can be lost to ``kill -9``.
    - :meth:`flush` (``logging.shutdown`` at exit) writes what is pending.
    - :func:`logging_write_through` makes every handler synchronous for the
      rest of the process: a worker process calls it at shutdown, before
      Dramatiq closes its log pipe.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._setup()
        _batching_handlers.add(self)

    def _setup(self) -> None:
        self._pending: list[str] = []
        self._cond = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()  # held from taking a batch to its write: keeps order
        self._thread: threading.Thread | None = None
        self._write_through = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or self._write_through:
            with self._cond:
                self._pending.append(line)
            self._write_pending()
            return
        with self._cond:
            self._pending.append(line)
            if self._thread is None or not self._thread.is_alive():
                _flush_at_exit()
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self) -> None:
        self._write_pending()
        super().flush()

    def write_through(self) -> None:
        """Write what is pending; from now on write every line before ``emit`` returns."""
        self._write_through = True
        self._write_pending()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            self._write_pending()

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._cond:
                lines, self._pending = self._pending, []
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception as exc:  # the stream is gone (a closed pipe): say so where we can
                with contextlib.suppress(Exception):
                    if sys.__stderr__ is not None:
                        sys.__stderr__.write(
                            f"--- Logging error: could not write {len(lines)} line(s): {exc!r}\n"
                        )

    def _after_fork(self) -> None:
        # The child has no writer thread, and a lock held at the fork stays held:
        # start afresh (the parent writes the lines it had pending).
        self._setup()


_batching_handlers: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


def logging_write_through() -> None:
    """Write every pending line and make the batching handlers write synchronously."""
    for handler in list(_batching_handlers):
        handler.write_through()


_exit_flush_pid: int | None = None


def _flush_at_exit() -> None:
    """Have this process write its pending lines when it exits, once per process.

    ``logging.shutdown`` (atexit) flushes every handler, but a
    ``multiprocessing`` child (a Dramatiq worker process or fork) leaves with
    ``os._exit``, which skips atexit; it runs ``multiprocessing``'s own
    finalizers, so the flush is registered there too.
    """
    global _exit_flush_pid
    if _exit_flush_pid == os.getpid():
        return
    _exit_flush_pid = os.getpid()
    multiprocessing_util.Finalize(None, logging_write_through, exitpriority=0)


def _reset_after_fork() -> None:
    for handler in list(_batching_handlers):
        handler._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
