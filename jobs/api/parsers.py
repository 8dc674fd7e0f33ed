"""The API's only parser: JSON, with a size limit (413) checked before reading."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from jobs.api.exceptions import RequestBodyTooLarge
from jobs.conf import jobs_settings


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class LimitedJSONParser(JSONParser):
    """JSON bodies up to API_MAX_BODY_BYTES; NaN and Infinity are refused."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = jobs_settings.api_max_body_bytes
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = RequestBodyTooLarge.over(limit)
        try:
            if declared and int(declared) > limit:
                raise too_large
        except ValueError:
            pass
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise too_large
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            return json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except (ValueError, LookupError, RecursionError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from None
