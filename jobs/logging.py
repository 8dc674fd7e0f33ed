"""Log context and redaction.

Every log line of a job carries its id, organization, actor and attempt, and
no line carries a secret: :class:`RedactSecretsFilter` scrubs API keys,
tokens, passwords and authorization headers from messages and extras.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

from jobs.redaction import redact, redact_text

_EMPTY: dict[str, Any] = {}
_log_context: ContextVar[dict[str, Any]] = ContextVar("jobs_log_context", default=_EMPTY)

#: Fields the filter always sets, so formatters may name them.
CONTEXT_FIELDS = ("job_id", "organization_id", "actor", "attempt")


def bind_log_context(**fields: Any) -> Token[dict[str, Any]]:
    """Add fields to the log context of this thread (or task) until the token is reset."""
    return _log_context.set({**_log_context.get(), **fields})


def unbind_log_context(token: Token[dict[str, Any]]) -> None:
    _log_context.reset(token)


def get_log_context() -> dict[str, Any]:
    return dict(_log_context.get())


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
    into ``exc_text``.
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
            setattr(record, name, redact(value, key=name))
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class DeferredSkipFilter(logging.Filter):
    """Drop Dramatiq's per-skip warning: deferrals and duplicate deliveries are expected.

    Our middleware logs each skip itself, with the reason, at a fitting level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Message %s was skipped."
