"""Redaction of secret-looking values before anything is shown or logged.

The admin, the API and log formatters share this module. A value is redacted
when its key *contains* one of the secret words, compared case-insensitively
with ``-`` read as ``_`` (``X-Api-Key``, ``db_password`` and ``access_token``
all match). ``JOBS_REDACT_KEYS`` adds words to the built-in list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from jobs.conf import jobs_settings

#: Words that mark a key as secret, whatever the settings say.
BUILTIN_SECRET_WORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
)

#: What a redacted value is replaced with.
REDACTED = "[redacted]"


def secret_words() -> tuple[str, ...]:
    """The built-in words plus ``JOBS_REDACT_KEYS``, normalised."""
    extra = tuple(_normalise(word) for word in jobs_settings.redact_keys if word.strip())
    return BUILTIN_SECRET_WORDS + extra


def _normalise(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def is_secret_key(key: object, words: Iterable[str] | None = None) -> bool:
    """Whether a mapping key looks like it holds a secret."""
    if not isinstance(key, str):
        return False
    normalised = _normalise(key)
    return any(word in normalised for word in (words if words is not None else secret_words()))


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with the values of secret-looking keys replaced.

    Nested dicts and lists are walked; the input is never modified.
    """
    return _redact(value, secret_words())


def _redact(value: Any, words: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key, words) else _redact(item, words)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, words) for item in value]
    return value


@lru_cache(maxsize=16)
def _text_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # `password=hunter2`, `"token": "abc"`, `Authorization: Bearer abc` ...
    alternatives = "|".join(re.escape(w).replace("_", "[_-]?") for w in words)
    return re.compile(
        rf"""(?ix)
        (?P<key>["']?[\w-]*(?:{alternatives})[\w-]*["']?\s*[:=]\s*)
        (?P<value>(?:bearer\s+|basic\s+)?"[^"]*"|(?:bearer\s+|basic\s+)?'[^']*'|(?:bearer\s+|basic\s+)?[^\s,;&}}\]]+)
        """
    )


def redact_text(text: str) -> str:
    """Free text (error messages, tracebacks) with ``secret=value`` pairs masked."""
    if not text:
        return text
    return _text_pattern(secret_words()).sub(lambda m: m.group("key") + REDACTED, text)
