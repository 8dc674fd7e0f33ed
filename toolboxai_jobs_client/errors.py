"""Errors of the client: one root, the API's error code on every API error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class JobsClientError(Exception):
    """Raised when the client cannot do what was asked; the root of every client error."""


class ConnectionFailed(JobsClientError):
    """Raised when the API cannot be reached (refused, reset, timed out)."""


class WaitTimeout(JobsClientError):
    """Raised when :meth:`Client.wait` gives up before the job finished.

    Parameters:
      job: the job as last seen.
    """

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class ApiError(JobsClientError):
    """Raised when the API answers with an error; ``code`` is its stable machine-readable code.

    Parameters:
      status: the HTTP status.
      code: the API's error code (``invalid``, ``job_not_found``, ``rate_limited``, …).
      message: what went wrong and how to fix it, as the API says it.
      fields: dotted path of each offending request field → messages.
      retry_after: the ``Retry-After`` header in seconds, when there is one.
      required_scope: with code ``missing_scope``, the API key scope needed.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        fields: Mapping[str, list[str]] | None = None,
        retry_after: int | None = None,
        required_scope: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields: dict[str, list[str]] = dict(fields or {})
        self.retry_after = retry_after
        self.required_scope = required_scope


class InvalidRequest(ApiError):
    """Raised on a 400: the request failed validation (``fields`` names each field)."""


class AuthenticationFailed(ApiError):
    """Raised on a 401: the API key is missing, malformed, unknown or revoked."""


class PermissionDenied(ApiError):
    """Raised on a 403: the organization is inactive, or the key lacks a scope."""


class MissingScope(PermissionDenied):
    """Raised on a 403 ``missing_scope``: ``required_scope`` names the scope the key needs."""


class NotFound(ApiError):
    """Raised on a 404: no such job or dead-letter group in the key's organization."""


class Conflict(ApiError):
    """Raised on a 409: the job's status does not allow this (e.g. cancelling a finished job)."""


class RateLimited(ApiError):
    """Raised on a 429: rate limit, monthly quota or stream cap; see ``retry_after``."""


class ServiceUnavailable(ApiError):
    """Raised on a 503: Postgres or Redis is unavailable; see ``retry_after``."""


class ServerError(ApiError):
    """Raised on any other 5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error(status: int, body: Any, retry_after: str | None) -> ApiError:
    """The error of an API answer: its JSON error body, or what can be said without one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": f"http_{status}", "message": "The server answered without a JSON error."}
    code = str(error.get("code") or f"http_{status}")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if status == 403 and code == "missing_scope":
        cls = MissingScope
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
    fields = error.get("fields")
    return cls(
        status=status,
        code=code,
        message=str(error.get("message") or ""),
        fields=fields if isinstance(fields, dict) else None,
        retry_after=seconds,
        required_scope=error.get("required_scope"),
    )
