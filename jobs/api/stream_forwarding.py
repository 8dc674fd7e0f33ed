"""Middleware: a threaded web process with no proxy in front forwards event streams to the events service.

In production nginx sends ``/api/v1/jobs/{id}/events/`` to the events service
(``deploy/nginx/toolboxai.conf``). Where nothing splits the paths (``make
run``), the web process does: with API_EVENTS_FORWARD_URL set, it relays
such a request to that URL as it came (method, query, credentials) and the
answer back as it streams, so the URLs of the one address work unchanged.
The relay holds one of this process's threads per stream but no database
connection (it runs before anything reads the session or the ledger); the
stream's slots and caps are the events service's. Under the ASGI server
itself nothing is forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

from jobs.api.errors import error_body
from jobs.conf import jobs_settings

#: The path the events service serves (what the nginx snippet splits off).
STREAM_PATH = re.compile(r"^/api/v1/jobs/[^/]+/events/$")
#: Request headers relayed to the events service (the rest are the relay's own).
FORWARDED_REQUEST_HEADERS = ("authorization", "cookie", "accept", "last-event-id", "user-agent")
#: Response headers relayed back (hop-by-hop ones are the server's business).
DROPPED_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}
#: Connecting to the events service; reading has no limit (a stream is long and quiet).
CONNECT_TIMEOUT_SECONDS = 5.0


def forward_event_streams(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Middleware: relay the event-stream path to API_EVENTS_FORWARD_URL when it is set."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        upstream = jobs_settings.api_events_forward_url
        if upstream and isinstance(request, WSGIRequest) and STREAM_PATH.match(request.path):
            return _relay(request, upstream.rstrip("/"))
        return get_response(request)

    return middleware


def _relay(request: HttpRequest, upstream: str) -> HttpResponseBase:
    headers = {
        name: value
        for name in FORWARDED_REQUEST_HEADERS
        if (value := request.headers.get(name)) is not None
    }
    headers["x-forwarded-for"] = request.META.get("REMOTE_ADDR", "")
    headers["x-forwarded-proto"] = request.scheme or "http"
    client = httpx.Client(
        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS),
        headers={"host": request.get_host()},
    )
    url = upstream + request.get_full_path()
    try:
        answer = client.send(
            client.build_request(request.method or "GET", url, headers=headers), stream=True
        )
    except httpx.HTTPError:
        client.close()
        refusal = JsonResponse(
            error_body(
                status_code=503,
                code="events_unavailable",
                message="The events service does not answer; retry shortly.",
            ),
            status=503,
        )
        refusal["Retry-After"] = str(jobs_settings.api_unavailable_retry_after_seconds)
        return refusal

    def body() -> Iterator[bytes]:
        try:
            yield from answer.iter_raw()
        finally:
            answer.close()
            client.close()

    response = StreamingHttpResponse(body(), status=answer.status_code)
    for name, value in answer.headers.items():
        if name.lower() not in DROPPED_RESPONSE_HEADERS:
            response[name] = value
    return response
