"""One JSON error shape for every API error, and the mapping of jobs errors to statuses.

Every error answers::

    {"error": {"status": 400, "code": "invalid", "message": "...",
               "fields": {"payload.message": ["This field is required."]}, "index": null}}

``fields`` maps dotted paths of the offending request fields (``jobs.3.priority``
in a batch) to messages; ``index`` is the position of the first bad job of a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from jobs.api.exceptions import RequestBodyTooLarge
from jobs.conf import jobs_settings
from jobs.errors import (
    BrokerUnavailable,
    InvalidPayload,
    InvalidSubmission,
    InvalidTransition,
    JobNotFound,
    JobsError,
    OrganizationInactive,
    SubmissionRefused,
    UnknownJobType,
)
from jobs.outages import POSTGRES, REDIS
from tenants.api.authentication import MissingScope

logger = logging.getLogger(__name__)

#: Retry-After of a 429 whose cause gave no better estimate, in seconds.
DEFAULT_RETRY_AFTER_SECONDS = 60


def error_body(
    *,
    status_code: int,
    code: str,
    message: str,
    fields: Mapping[str, list[str]] | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "status": status_code,
            "code": code,
            "message": message,
            "fields": dict(fields or {}),
            "index": index,
        }
    }


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into ``{"dotted.path": [messages]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if key == "non_field_errors" and prefix:
                path = prefix  # errors of a nested object (e.g. a list too long) belong to it
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (Mapping, list)) for item in detail):
            if detail:
                flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for position, item in enumerate(detail):
                if item:
                    path = f"{prefix}.{position}" if prefix else str(position)
                    flat.update(flatten_errors(item, path))
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def _summary(fields: Mapping[str, list[str]]) -> str:
    parts = [f"{name}: {messages[0]}" for name, messages in list(fields.items())[:5] if messages]
    more = f" (and {len(fields) - 5} more)" if len(fields) > 5 else ""
    return "Invalid request. " + "; ".join(parts) + more


def _first_index(fields: Mapping[str, list[str]], list_field: str) -> int | None:
    for name in fields:
        head, _, rest = name.partition(".")
        if head == list_field and rest.split(".")[0].isdigit():
            return int(rest.split(".")[0])
    return None


def _jobs_error_response(exc: JobsError, view: Any) -> Response:
    payload_field = getattr(view, "payload_field", "payload")
    type_field = getattr(view, "type_field", "type")
    prefix = f"{getattr(view, 'batch_field', 'jobs')}.{exc.index}." if exc.index is not None else ""
    headers: dict[str, str] = {}
    fields: dict[str, list[str]] = {}
    if isinstance(exc, InvalidPayload):
        status_code = 400
        errors = exc.errors or {"payload": [str(exc)]}
        for name, messages in flatten_errors(errors).items():
            path = payload_field if name == "payload" else f"{payload_field}.{name}"
            fields[prefix + path] = messages
    elif isinstance(exc, InvalidSubmission):
        status_code = 400
        fields[prefix + exc.field] = [str(exc)]
    elif isinstance(exc, UnknownJobType):
        status_code = 400
        fields[prefix + type_field] = [str(exc)]
    elif isinstance(exc, OrganizationInactive):
        status_code = 403
    elif isinstance(exc, SubmissionRefused):
        status_code = 429
        headers["Retry-After"] = str(exc.retry_after_seconds or DEFAULT_RETRY_AFTER_SECONDS)
    elif isinstance(exc, InvalidTransition):
        status_code = 409
    elif isinstance(exc, JobNotFound):
        status_code = 404
    elif isinstance(exc, BrokerUnavailable):
        status_code = 503
        headers["Retry-After"] = str(jobs_settings.api_unavailable_retry_after_seconds)
    else:
        status_code = 400
    body = error_body(
        status_code=status_code, code=exc.code, message=str(exc), fields=fields, index=exc.index
    )
    return Response(body, status=status_code, headers=headers)


def _unavailable(code: str, message: str) -> Response:
    return Response(
        error_body(status_code=503, code=code, message=message),
        status=503,
        headers={"Retry-After": str(jobs_settings.api_unavailable_retry_after_seconds)},
    )


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error in the one documented shape."""
    view = context.get("view")
    if isinstance(exc, JobsError):
        set_rollback()
        return _jobs_error_response(exc, view)
    if isinstance(exc, (OperationalError, InterfaceError)):
        set_rollback()
        POSTGRES.failed(exc)
        logger.info("API request failed: the database is unavailable (%s).", exc)
        return _unavailable(
            "database_unavailable", "The database is unavailable; nothing was changed. Retry later."
        )
    if isinstance(exc, redis.RedisError):
        set_rollback()
        REDIS.failed(exc)
        logger.info("API request failed: Redis is unavailable (%s).", exc)
        return _unavailable(
            "broker_unavailable", "Redis is unavailable; nothing was changed. Retry later."
        )
    if isinstance(exc, DatabaseError):
        return None
    if isinstance(exc, RequestDataTooBig):
        # Django's DATA_UPLOAD_MAX_MEMORY_SIZE, met when reading the body (jobs.api.body_limits
        # answers first while it is at least API_MAX_BODY_BYTES): the same 413, not HTML.
        exc = RequestBodyTooLarge.over(jobs_settings.api_max_body_bytes)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    if not isinstance(exc, exceptions.APIException):
        return None
    set_rollback()
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
    elif exc.status_code == 503:
        headers["Retry-After"] = str(jobs_settings.api_unavailable_retry_after_seconds)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        batch_field = getattr(view, "batch_field", "jobs")
        body = error_body(
            status_code=400,
            code="invalid",
            message=_summary(fields),
            fields=fields,
            index=_first_index(fields, batch_field),
        )
        return Response(body, status=400, headers=headers)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    detail = exc.detail
    message = str(detail) if isinstance(detail, str) else _summary(flatten_errors(detail))
    body = error_body(status_code=exc.status_code, code=str(code), message=message)
    if isinstance(exc, MissingScope):
        body["error"]["required_scope"] = exc.scope
    return Response(body, status=exc.status_code, headers=headers)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON 404 under /api/ (unknown URLs and malformed ids); Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse(
            error_body(
                status_code=404,
                code="not_found",
                message=f"No API endpoint or object at {request.path!r}.",
            ),
            status=404,
        )
    return defaults.page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> HttpResponse:
    """JSON 500 under /api/ (a bug: the error is logged with its traceback)."""
    if _wants_json(request):
        return JsonResponse(
            error_body(
                status_code=500,
                code="server_error",
                message="Internal error; it has been logged. Retry, or report it if it persists.",
            ),
            status=500,
        )
    return defaults.server_error(request)
