"""A Roblox Open Cloud server: the Messaging Service publish endpoint."""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import FakeHTTPServer, RecordedRequest

_PUBLISH = re.compile(r"^/messaging-service/v1/universes/(\d+)/topics/([^/]+)$")


class FakeRoblox(FakeHTTPServer):
    def __init__(self, *, api_key: str) -> None:
        super().__init__(api_key=api_key)
        self.published: list[tuple[int, str, str]] = []

    def handle(self, handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        match = _PUBLISH.match(request.path)
        if match is None:
            self.send_json(handler, 404, {"code": "NOT_FOUND", "message": "Not found."})
            return
        if request.headers.get("x-api-key") != self.api_key:
            self.send_json(handler, 401, {"code": "UNAUTHENTICATED", "message": "Invalid API Key"})
            return
        body = request.json() or {}
        if not isinstance(body.get("message"), str):
            self.send_json(
                handler, 400, {"code": "INVALID_ARGUMENT", "message": "message is required."}
            )
            return
        self.published.append((int(match.group(1)), match.group(2), body["message"]))
        self.send_json(handler, 200, None)
