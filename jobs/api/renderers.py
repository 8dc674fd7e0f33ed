"""The API's renderers: DRF's, made unable to fail on text that is not valid Unicode.

An error message may echo the request, and a request's JSON may hold a lone
surrogate (``"\\ud800"``: half of a UTF-16 pair, which UTF-8 cannot encode).
DRF's renderers then raised ``UnicodeEncodeError``, turning a 400 into a 500.
"""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer


class _AsciiJSONRenderer(JSONRenderer):
    ensure_ascii = True


_ascii = _AsciiJSONRenderer()


class SafeJSONRenderer(JSONRenderer):
    """DRF's JSON renderer; a response UTF-8 cannot encode is rendered again with ``\\u`` escapes.

    Escaping every non-ASCII character is valid JSON of the same data. Only
    a response holding a lone surrogate takes that second pass.
    """

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Any = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _ascii.render(data, accepted_media_type, renderer_context)


class SafeBrowsableAPIRenderer(BrowsableAPIRenderer):
    """DRF's browsable API; a character UTF-8 cannot encode is shown as its ``\\u`` escape."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Any = None,
    ) -> str:
        page = super().render(data, accepted_media_type, renderer_context)
        charset = self.charset or "utf-8"
        return page.encode(charset, "backslashreplace").decode(charset)
