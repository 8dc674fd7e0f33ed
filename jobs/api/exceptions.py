"""API errors that are not jobs errors (DRF exceptions with our codes)."""

from __future__ import annotations

from rest_framework import exceptions, status


class RequestBodyTooLarge(exceptions.APIException):
    """Raised when a request body is larger than API_MAX_BODY_BYTES."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "body_too_large"
