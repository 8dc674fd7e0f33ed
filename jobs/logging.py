"""Log context: every log line of a job carries its id, organization, actor and attempt."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

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
            if not hasattr(record, name):
                value = context.get(name)
                setattr(record, name, "-" if value is None else value)
        return True


class DeferredSkipFilter(logging.Filter):
    """Drop Dramatiq's per-skip warning: deferrals and duplicate deliveries are expected.

    Our middleware logs each skip itself, with the reason, at a fitting level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Message %s was skipped."
