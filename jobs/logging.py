"""Log context and redaction.

Every log line of a job carries its id, organization, actor and attempt, and
no line carries a secret: :class:`RedactSecretsFilter` scrubs API keys,
tokens, passwords and authorization headers from messages and extras.
"""

from __future__ import annotations

import logging
import re
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
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            setattr(record, name, "-" if value is None else value)
        return True


# --- Secret redaction ---------------------------------------------------------

REDACTED = "[REDACTED]"

# Names of secrets, not a secret.
_SECRET_KEY_NAMES = (
    "(?:"
    + "|".join(
        (
            "authorization",
            "api[_-]?key",
            "passw(?:or)?d",
            "passphrase",
            "token",
            "secret",
            "cookie",
            "session[_-]?id",
            "private[_-]?key",
            "credentials?",
        )
    )
    + ")"
)
#: Key names whose values are secrets wherever they appear (extras, dicts, ``key=value`` text):
#: any name ending in one of these (``db_password``, ``X-Api-Key``, ``access_token``).
SECRET_KEY_PATTERN = re.compile(rf"[\w-]*{_SECRET_KEY_NAMES}", re.IGNORECASE)
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Our API keys: keep the non-secret prefix, which identifies the key.
    (re.compile(r"\b(tbx_[0-9a-f]{8})_[A-Za-z0-9_\-]{8,}"), rf"\1_{REDACTED}"),
    # Authorization headers: "Bearer <token>", "Basic <b64>", "Api-Key <key>".
    (
        re.compile(r"\b(Bearer|Basic|Token|Api-Key)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE),
        rf"\1 {REDACTED}",
    ),
    # key=value, key: value, "key": "value", 'key': 'value' (dict reprs, JSON, query strings).
    (
        re.compile(
            rf"""(?P<key>["']?(?<![\w-])[\w-]*{_SECRET_KEY_NAMES}["']?\s*[:=]\s*)"""
            r"""(?P<quote>["']?)(?P<value>[^"'\s,;&}\])]+)""",
            re.IGNORECASE,
        ),
        rf"\g<key>\g<quote>{REDACTED}",
    ),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    # Well-known vendor key shapes (OpenAI, SendGrid).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"), REDACTED),
)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact_text(text: str) -> str:
    """Replace secret-looking values in free text (API keys, tokens, passwords) with a marker."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, *, key: str | None = None, _depth: int = 0) -> Any:
    """Redact a value for display: secret-named keys lose their values, strings are scrubbed."""
    if key is not None and SECRET_KEY_PATTERN.fullmatch(key) and value not in (None, ""):
        return REDACTED
    if _depth > 8:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, key=str(k), _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, _depth=_depth + 1) for v in value)
    return value


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
