"""A SendGrid v3 server: ``POST /v3/mail/send`` answers 202 with an ``X-Message-Id``."""

from __future__ import annotations

import uuid
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import FakeHTTPServer, RecordedRequest


def sendgrid_error(message: str, field: str | None = None) -> dict[str, object]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


class FakeSendGrid(FakeHTTPServer):
    def __init__(self, *, api_key: str) -> None:
        super().__init__(api_key=api_key)
        self.message_ids: list[str] = []

    def handle(self, handler: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        if request.path != "/v3/mail/send":
            self.send_json(handler, 404, sendgrid_error("Not found."))
            return
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            self.send_json(
                handler, 401, sendgrid_error("The provided authorization grant is invalid.")
            )
            return
        body = request.json()
        if not body.get("personalizations") or not body.get("from"):
            self.send_json(handler, 400, sendgrid_error("Bad request.", "personalizations"))
            return
        message_id = uuid.uuid4().hex[:22]
        self.message_ids.append(message_id)
        self.send_json(handler, 202, None, {"X-Message-Id": message_id})

    def mails(self) -> list[dict[str, object]]:
        return [r.json() for r in self.requests if r.path == "/v3/mail/send"]
