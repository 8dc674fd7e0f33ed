"""Redaction of secret-looking values before anything is shown or logged.

The admin, the API, the CLI and the log filter share this module.

- A mapping value is redacted when its key contains one of the secret words as
  whole ``_``-separated parts, compared case-insensitively with ``-`` and
  camelCase read as ``_`` (``X-Api-Key``, ``db_password``, ``accessToken`` and
  ``secret_key`` match; ``max_tokens`` and ``prompt_tokens`` do not).
  ``JOBS_REDACT_KEYS`` adds words to the built-in list.
- Free text (messages, tracebacks, string values) loses ``secret=value`` pairs,
  ``Bearer``/``Basic`` credentials, passwords in URLs, our ``tbx_…`` API keys
  (the public prefix stays, to identify the key) and well-known vendor key shapes.
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
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "session_id",
    "sessionid",
    "private_key",
    "credential",
)

#: What a redacted value is replaced with.
REDACTED = "[redacted]"

_FIXED_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Our API keys: keep the non-secret prefix, which identifies the key.
    (re.compile(r"\b(tbx_[0-9a-f]{8})_[A-Za-z0-9_\-]{8,}"), rf"\1_{REDACTED}"),
    # Authorization headers: "Bearer <token>", "Basic <b64>", "Token <key>", "Api-Key <key>".
    (
        re.compile(r"\b(Bearer|Basic|Token|Api-Key)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE),
        rf"\1 {REDACTED}",
    ),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    # Well-known vendor key shapes (OpenAI, SendGrid).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"), REDACTED),
)


def secret_words() -> tuple[str, ...]:
    """The built-in words plus ``JOBS_REDACT_KEYS``, normalised."""
    extra = tuple(_normalise(word) for word in jobs_settings.redact_keys if word.strip())
    return BUILTIN_SECRET_WORDS + extra


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _normalise(key: str) -> str:
    return _CAMEL.sub("_", key.strip()).lower().replace("-", "_")


def is_secret_key(key: object, words: Iterable[str] | None = None) -> bool:
    """Whether a mapping key looks like it holds a secret."""
    if not isinstance(key, str):
        return False
    padded = f"_{_normalise(key)}_"
    return any(f"_{word}_" in padded for word in (words if words is not None else secret_words()))


def redact(value: Any, *, key: str | None = None) -> Any:
    """A copy of a JSON-like value with secrets replaced; the input is never modified.

    Values under secret-looking keys are replaced at any depth, and strings are
    scrubbed with :func:`redact_text`.
    """
    words = secret_words()
    if key is not None and is_secret_key(key, words) and value not in (None, ""):
        return REDACTED
    return _redact(value, words, 0)


def _redact(value: Any, words: tuple[str, ...], depth: int) -> Any:
    if depth > 16:
        return value
    if isinstance(value, str):
        return _redact_text(value, words)
    if isinstance(value, dict):
        return {
            k: REDACTED
            if is_secret_key(k, words) and item not in (None, "")
            else _redact(item, words, depth + 1)
            for k, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, words, depth + 1) for item in value]
    return value


@lru_cache(maxsize=16)
def _pair_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # `password=hunter2`, `"token": "abc"`, `Authorization: Bearer abc`, `?api_key=x&...`
    alternatives = "|".join(re.escape(w).replace("_", "[_-]?") for w in words)
    return re.compile(
        rf"""(?ix)
        (?P<key>["']?(?<![\w-])(?:[a-z0-9]+[_-])*(?:{alternatives})(?:[_-][a-z0-9]+)*["']?\s*[:=]\s*)
        (?P<value>(?:bearer\s+|basic\s+|token\s+)?"[^"]*"
                 |(?:bearer\s+|basic\s+|token\s+)?'[^']*'
                 |(?:bearer\s+|basic\s+|token\s+)?[^\s"',;&}}\])]+)
        """
    )


def redact_text(text: str) -> str:
    """Free text (error messages, tracebacks, log lines) with secrets masked."""
    return _redact_text(text, secret_words())


#: Every pattern of :func:`_redact_text` needs one of these; text without them is left as is.
_MAY_HOLD_SECRET = re.compile(
    r"[:=]|tbx_|sk-|SG\.|\b(?:bearer|basic|token|api-key)\s", re.IGNORECASE
)


#: Lower-case substrings, one of which every match of ``_MAY_HOLD_SECRET`` contains.
_MAY_HOLD_SECRET_PARTS = (":", "=", "tbx_", "sk-", "sg.", "bearer", "basic", "token", "api-key")


def _may_hold_secret(text: str) -> bool:
    # Substring tests run at memory speed; the case-insensitive regex, with no
    # literal to anchor on, took ~4 ms over a bulk submission's 37 kB log line.
    # Only ASCII text: the regex's case-insensitive letters also match a few
    # non-ASCII ones (the Kelvin sign, the long s, the dotless i).
    if ":" in text or "=" in text:
        return True
    if text.isascii():
        lowered = text.lower()
        if not any(part in lowered for part in _MAY_HOLD_SECRET_PARTS):
            return False
    return _MAY_HOLD_SECRET.search(text) is not None


def _redact_text(text: str, words: tuple[str, ...]) -> str:
    if not text or not _may_hold_secret(text):
        return text
    text = _pair_pattern(words).sub(lambda m: m.group("key") + REDACTED, text)
    for pattern, replacement in _FIXED_TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
