"""Middleware: refuse an API request body over API_MAX_BODY_BYTES, or without a length, unread.

DRF's JSON parsing reads the whole body through ``request.body`` before the
parser sees it, and Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE
there with its HTML "Bad Request (400)". This middleware answers first, from
the headers alone, with the API's JSON errors:

- 413 ``body_too_large`` when ``Content-Length`` is over API_MAX_BODY_BYTES;
- 411 ``length_required`` when the body is chunked (``Transfer-Encoding``
  without ``Content-Length``): a WSGI server hands Django such a body as
  empty, which read as "type: This field is required.".

Only paths under ``/api/`` are concerned; it imports no view.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from rest_framework.exceptions import APIException

from jobs.api.errors import error_body
from jobs.api.exceptions import LengthRequired, RequestBodyTooLarge
from jobs.conf import jobs_settings

API_PREFIX = "/api/"


def api_body_limits(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Middleware: answer 413 or 411 for an API request before anything reads its body."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(API_PREFIX):
            refusal = _refusal(request)
            if refusal is not None:
                return _error_response(refusal)
        return get_response(request)

    return middleware


def _refusal(request: HttpRequest) -> APIException | None:
    declared = request.META.get("CONTENT_LENGTH")
    if not declared:
        return LengthRequired() if request.META.get("HTTP_TRANSFER_ENCODING") else None
    try:
        size = int(declared)
    except ValueError:
        return None  # Django reads an unparsable length as no body
    limit = jobs_settings.api_max_body_bytes
    return RequestBodyTooLarge.over(limit) if size > limit else None


def _error_response(exc: APIException) -> JsonResponse:
    body = error_body(
        status_code=exc.status_code, code=str(exc.default_code), message=str(exc.detail)
    )
    return JsonResponse(body, status=exc.status_code)
