"""API errors that are not jobs errors (DRF exceptions with our codes)."""

from __future__ import annotations

from rest_framework import exceptions, status


class RequestBodyTooLarge(exceptions.APIException):
    """Raised when a request body is larger than API_MAX_BODY_BYTES."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "body_too_large"

    @classmethod
    def over(cls, limit: int) -> RequestBodyTooLarge:
        """The error of a body over ``limit`` bytes, with what to do instead."""
        return cls(
            f"The request body is larger than API_MAX_BODY_BYTES={limit} bytes; "
            "send fewer jobs per batch, or reference large data instead of embedding it."
        )


class LengthRequired(exceptions.APIException):
    """Raised when a request body comes without a Content-Length (chunked transfer encoding)."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = (
        "The request body was sent without a Content-Length header (chunked transfer "
        "encoding), which the API does not read. Send the body with its Content-Length."
    )
    default_code = "length_required"
