"""Clients of outside providers (OpenAI, SendGrid and SMTP, Roblox Open Cloud).

Each module turns the provider's answers into our error policy:

- a rate limit (429) raises ``dramatiq.Retry`` with the provider's ``Retry-After``;
- a server error (5xx) or a lost connection raises :class:`ProviderUnavailable`,
  which Dramatiq retries with exponential backoff;
- any other client error (400, 401, 403, 404, 422) raises a
  :class:`jobs.errors.PermanentJobError`: retrying cannot help.

No message built here contains an API key: provider texts pass through :func:`redact`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

#: Longest delay a provider's Retry-After may impose on one retry, in ms.
MAX_RETRY_AFTER_MS = 3_600_000
_MAX_TEXT = 500


class ProviderUnavailable(Exception):
    """Raised when a provider answers 5xx or cannot be reached; the job is retried with backoff."""


def redact(text: str, *secrets: str) -> str:
    """``text`` shortened, with every secret (API keys, passwords) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:_MAX_TEXT]


def retry_after_ms(headers: Mapping[str, Any] | Any) -> int | None:
    """The delay a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header asks for."""
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    raw_ms = getter("retry-after-ms") or getter("Retry-After-Ms")
    if raw_ms:
        try:
            return _clamp(float(raw_ms))
        except ValueError:
            pass
    raw = getter("retry-after") or getter("Retry-After")
    if not raw:
        return None
    try:
        return _clamp(float(raw) * 1000)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(str(raw))
    if parsed is None:
        return None
    return _clamp((email.utils.mktime_tz(parsed) - time.time()) * 1000)


def _clamp(ms: float) -> int:
    return int(min(max(ms, 0), MAX_RETRY_AFTER_MS))
