"""``GET /api/v1/jobs/{id}/events/``: a job's Server-Sent Events stream.

The route is :func:`job_events`, an async view. Under an ASGI server (the
events service) it runs :class:`JobEventsView` (authentication, the
organization's job, the caps, JSON errors: the same as everywhere) on the
:mod:`jobs.api.ledger_pool` for a moment, and the stream itself on the event
loop. Under a threaded WSGI server the view runs in the request's thread and
streams from it, as any other view does.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.ledger_pool import ledger_pool
from jobs.api.renderers import SafeJSONRenderer
from jobs.api.schema import JOB_ID
from jobs.api.serializers import JobSerializer
from jobs.api.stream_slots import ClosingStream, stream_hold
from jobs.api.streaming import JobEventTracker, stream_sync
from jobs.api.streaming_async import stream_watched
from jobs.models import Job
from jobs.selectors import job_get
from jobs.transport.events import events_pubsub
from tenants.api.authentication import request_organization
from tenants.models import ApiKey


class EventStreamRenderer(BaseRenderer):
    """Lets clients ask for ``text/event-stream``; the view streams the body itself."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Any = None,
    ) -> bytes:
        return SafeJSONRenderer().render(data)


#: One event of the stream, as SSE clients parse it; ``data`` is JSON text.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "progress", "partial", "gone"]},
        "data": {
            "type": "string",
            "description": "JSON: the whole job (status), {id, progress, message} (progress), "
            "{id, text, ...} (partial) or {id} (gone: the job was deleted while the stream "
            "was open, by retention or from the admin; the stream ends after it).",
        },
        "id": {"type": "string"},
        "retry": {"type": "integer", "description": "Reconnection delay hint, in ms."},
    },
}


class JobEventsView(APIView):
    """Server-Sent Events: status, progress and partial results, until the job finishes.

    Events: ``status`` (the whole job: sent first, then on every status change),
    ``progress`` (``{"id", "progress", "message"}``), ``partial`` (what the job
    publishes, e.g. ``{"id", "text"}``), and ``gone`` if the job is deleted.
    """

    renderer_classes = [SafeJSONRenderer, EventStreamRenderer]
    # No HEAD: a threaded server would run the stream for its whole life with
    # nowhere to write, so it would never notice the client leave.
    http_method_names = ["get", "options"]

    @extend_schema(
        parameters=[JOB_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT_SCHEMA, description="An SSE stream that closes when the job finishes."
            )
        },
        operation_id="jobs_events",
        description="Server-Sent Events until the job finishes. Events: `status` (the whole "
        "job: sent first, then on every status change), `progress` (`{id, progress, "
        "message}`), `partial` (what the job streams, e.g. `{id, text}`), and `gone` "
        "(`{id}`) when the job is deleted while the stream is open; the stream ends after "
        "the job finishes or is gone. An idle stream sends `: heartbeat` comment lines.",
    )
    def get(self, request: Request, job_id: str) -> HttpResponseBase:
        organization = request_organization(request)
        job = job_get(organization=organization, job_id=job_id)

        def render(current: Job) -> dict[str, Any]:
            return dict(JobSerializer(current, context={"request": request}).data)

        tracker = JobEventTracker(job_id=job.pk, organization_id=organization.pk, render_job=render)
        holder = (
            f"key:{request.auth.pk}"
            if isinstance(request.auth, ApiKey)
            else f"user:{request.user.pk}"
        )
        threaded = not isinstance(request._request, ASGIRequest)
        hold = stream_hold(holder=holder, organization_id=organization.pk, threaded=threaded)
        content: Any
        if not threaded:
            content = stream_watched(tracker, hold)
        else:
            try:
                # Subscribing here turns a Redis outage into a 503 before the stream starts.
                pubsub = events_pubsub(str(job.pk))
            except BaseException:
                hold.release()
                raise
            content = ClosingStream(stream_sync(tracker, pubsub, hold), hold)
        response = StreamingHttpResponse(content, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are JSON even when the client asked for text/event-stream.
        self.request.accepted_renderer = SafeJSONRenderer()
        self.request.accepted_media_type = SafeJSONRenderer.media_type
        return super().handle_exception(exc)


_events_view = JobEventsView.as_view()


@csrf_exempt  # as every DRF view: SessionAuthentication checks CSRF itself
async def job_events(request: HttpRequest, job_id: str) -> HttpResponseBase:
    """The stream's route: :class:`JobEventsView` on the ledger pool (ASGI) or the request's thread."""
    if isinstance(request, ASGIRequest):
        return await ledger_pool().run(_rendered_view, request, job_id)
    response: HttpResponseBase = await sync_to_async(_events_view, thread_sensitive=True)(
        request, job_id=job_id
    )
    return response


def _rendered_view(request: HttpRequest, job_id: str) -> HttpResponseBase:
    response = _events_view(request, job_id=job_id)
    if isinstance(response, Response):
        # Rendered here, on the pool's thread: Django would otherwise render it through
        # a thread of the request's own, one more thread per request.
        response.render()
        plain = HttpResponse(response.content, status=response.status_code)
        for header, value in response.items():
            plain[header] = value
        return plain
    return response


# What DRF's as_view() leaves on its view: the schema generator finds JobEventsView by it.
job_events.cls = JobEventsView  # type: ignore[attr-defined]
job_events.initkwargs = {}  # type: ignore[attr-defined]
