"""Thin views of the jobs API: parse, call a service or selector, shape the output."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.pagination import JobPagination
from jobs.api.renderers import SafeJSONRenderer
from jobs.api.schema import payload_json_schema
from jobs.api.serializers import (
    JobBatchCreateSerializer,
    JobBatchSerializer,
    JobCreateSerializer,
    JobFilterSerializer,
    JobPageSerializer,
    JobSerializer,
    JobTypeSerializer,
    TaskStatusSerializer,
    TaskSubmitSerializer,
    TaskSubmittedSerializer,
    public_job_type_names,
)
from jobs.api.stream_slots import ClosingStream, stream_hold
from jobs.api.streaming import JobEventTracker, stream_async, stream_sync
from jobs.errors import UnknownJobType
from jobs.models import Job, JobStatus
from jobs.registry import JobType, all_job_types, get_job_type
from jobs.selectors import job_get, jobs_for_organization
from jobs.services import JobRequest, job_cancel, job_retry, job_submit, job_submit_many
from jobs.transport.events import events_pubsub
from tenants.api.authentication import request_organization
from tenants.models import ApiKey

VIA = "api"

_JOB_ID = OpenApiParameter(
    "job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."
)


def _delay(seconds: float | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds is not None else None


def _user(request: Request) -> Any:
    return request.user if request.user.is_authenticated else None


class JobTypeListView(APIView):
    """The job types API users may submit (internal and periodic types are left out)."""

    @extend_schema(responses=JobTypeSerializer(many=True), operation_id="job_types_list")
    def get(self, request: Request) -> Response:
        data = [
            {
                "name": jt.name,
                "queue": jt.queue,
                "description": jt.description,
                "payload_schema": payload_json_schema(jt.payload_serializer),
            }
            for jt in all_job_types()
            if jt.public
        ]
        return Response(JobTypeSerializer(data, many=True).data)


_thread_serializers = threading.local()


def _job_create_serializer(data: Any) -> JobCreateSerializer:
    """A :class:`JobCreateSerializer` bound to ``data``: this thread's, reset, or a new one.

    DRF deep-copies the declared fields (and builds their validators again)
    for every serializer instance: about a tenth of an API submission's CPU.
    Only what ``is_valid()`` caches is per request, and it is cleared here. The
    job type choices are read when a serializer is built, so one is built
    again when the public job types change.
    """
    names = tuple(public_job_type_names())
    cached: tuple[tuple[str, ...], JobCreateSerializer] | None = getattr(
        _thread_serializers, "create", None
    )
    if cached is None or cached[0] != names:
        serializer = JobCreateSerializer(data=data)
        _thread_serializers.create = (names, serializer)
        return serializer
    serializer = cached[1]
    serializer.initial_data = data
    for attr in ("_validated_data", "_errors", "_data"):
        serializer.__dict__.pop(attr, None)
    return serializer


class JobListCreateView(APIView):
    """List the organization's jobs, or submit one."""

    payload_field = "payload"

    @extend_schema(
        parameters=[
            JobFilterSerializer,
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="The `next` or `previous` link's cursor."
            ),
            OpenApiParameter(
                "page_size",
                OpenApiTypes.INT,
                description="Jobs per page (default API_PAGE_SIZE, at most API_MAX_PAGE_SIZE).",
            ),
        ],
        responses=JobPageSerializer,
        description="The organization's jobs, newest first, filtered and paginated.",
        operation_id="jobs_list",
    )
    def get(self, request: Request) -> Response:
        filters = JobFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        qs = jobs_for_organization(
            organization=request_organization(request),
            status=params.get("status"),
            job_type=params.get("type"),
            queue=params.get("queue"),
            created_after=params.get("created_after"),
            created_before=params.get("created_before"),
        )
        paginator = JobPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        data = JobSerializer(page, many=True, context={"request": request}).data  # type: ignore[arg-type]
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=JobCreateSerializer,
        responses={
            201: OpenApiResponse(JobSerializer, description="Created."),
            200: OpenApiResponse(
                JobSerializer, description="The job created earlier with this idempotency key."
            ),
        },
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[201, 200],
                description="The job's URL.",
            )
        ],
        examples=[
            OpenApiExample(
                "Echo",
                value={
                    "type": "diagnostics.echo",
                    "payload": {"message": "hello", "sleep_seconds": 1},
                    "priority": 5,
                },
                request_only=True,
            )
        ],
        operation_id="jobs_create",
        description="Submit a job. The same idempotency key again returns the first job (200).",
    )
    def post(self, request: Request) -> Response:
        serializer = _job_create_serializer(request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        submission = job_submit(
            job_type=data["type"],
            payload=data["payload"],
            organization=request_organization(request),
            priority=data["priority"],
            idempotency_key=data.get("idempotency_key"),
            delay=_delay(data.get("delay_seconds")),
        )
        body = JobSerializer(submission.job, context={"request": request}).data
        return Response(
            body,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers={"Location": body["url"]},
        )


class JobBatchView(APIView):
    """Submit up to 1,000 jobs at once: all are validated first, or none is created."""

    payload_field = "payload"
    batch_field = "jobs"

    @extend_schema(
        request=JobBatchCreateSerializer,
        responses={201: JobBatchSerializer},
        examples=[
            OpenApiExample(
                "Two echoes",
                value={
                    "jobs": [
                        {"type": "diagnostics.echo", "payload": {"message": "one"}},
                        {"type": "diagnostics.echo", "payload": {"message": "two"}, "priority": 8},
                    ]
                },
                request_only=True,
            )
        ],
        operation_id="jobs_batch_create",
    )
    def post(self, request: Request) -> Response:
        serializer = JobBatchCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        requests = [
            JobRequest(
                job_type=item["type"],
                payload=item["payload"],
                priority=item["priority"],
                idempotency_key=item.get("idempotency_key"),
                delay=_delay(item.get("delay_seconds")),
            )
            for item in serializer.validated_data["jobs"]
        ]
        submissions = job_submit_many(requests=requests, organization=request_organization(request))
        jobs = [s.job for s in submissions]
        body = {
            "jobs": JobSerializer(jobs, many=True, context={"request": request}).data  # type: ignore[arg-type]
        }
        return Response(body, status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    @extend_schema(parameters=[_JOB_ID], responses=JobSerializer, operation_id="jobs_retrieve")
    def get(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        return Response(JobSerializer(job, context={"request": request}).data)


class JobCancelView(APIView):
    """Cancel a job. A running job stops at its next progress report or checkpoint."""

    @extend_schema(
        parameters=[_JOB_ID], request=None, responses=JobSerializer, operation_id="jobs_cancel"
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        job = job_cancel(job=job, user=_user(request), via=VIA)
        return Response(JobSerializer(job, context={"request": request}).data)


class JobRetryView(APIView):
    """Queue a failed or cancelled job again, with a fresh retry budget."""

    @extend_schema(
        parameters=[_JOB_ID], request=None, responses=JobSerializer, operation_id="jobs_retry"
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        job = job_retry(job=job, enforce_limits=True, user=_user(request), via=VIA)
        return Response(JobSerializer(job, context={"request": request}).data)


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
            "{id, text, ...} (partial) or {id} (gone).",
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
        parameters=[_JOB_ID],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT_SCHEMA, description="An SSE stream that closes when the job finishes."
            )
        },
        operation_id="jobs_events",
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
            content = stream_async(tracker, hold)
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


# --- Compatibility with the ToolBoxAI Celery document ---------------------------

#: Task names of the Celery document → job types.
CELERY_TASK_TYPES = {
    "content_generation": "content.generate_lesson",
    "send_email": "email.send_transactional",
}

#: Job status → Celery state.
CELERY_STATES = {
    JobStatus.QUEUED: "PENDING",
    JobStatus.RUNNING: "STARTED",
    JobStatus.RETRYING: "RETRY",
    JobStatus.SUCCEEDED: "SUCCESS",
    JobStatus.FAILED: "FAILURE",
    JobStatus.CANCELLED: "REVOKED",
}


def _public_job_type(name: str) -> JobType:
    # Unknown and internal types get one answer, which lists neither.
    refusal = UnknownJobType(
        f"{name!r} is not a job type you can submit; GET /api/v1/job-types/ lists them "
        f"(and {', '.join(CELERY_TASK_TYPES)} are accepted as their Celery names)."
    )
    try:
        jt = get_job_type(CELERY_TASK_TYPES.get(name, name))
    except UnknownJobType:
        raise refusal from None
    if not jt.public:
        raise refusal
    return jt


class TaskSubmitView(APIView):
    """Celery-document compatibility: submit ``task_type`` with ``task_data``."""

    payload_field = "task_data"
    type_field = "task_type"

    @extend_schema(
        request=TaskSubmitSerializer,
        responses=TaskSubmittedSerializer,
        examples=[
            OpenApiExample(
                "Echo",
                value={"task_type": "diagnostics.echo", "task_data": {"message": "hi"}},
                request_only=True,
            )
        ],
        operation_id="tasks_submit",
        tags=["compatibility"],
    )
    def post(self, request: Request) -> Response:
        serializer = TaskSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        jt = _public_job_type(data["task_type"])
        submission = job_submit(
            job_type=jt.name,
            payload=data["task_data"],
            organization=request_organization(request),
            priority=data["priority"],
        )
        return Response({"task_id": str(submission.job.pk), "status": "submitted"})


class TaskStatusView(APIView):
    """Celery-document compatibility: a job's state in Celery's words."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "task_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."
            )
        ],
        responses=TaskStatusSerializer,
        operation_id="tasks_status",
        tags=["compatibility"],
    )
    def get(self, request: Request, task_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=task_id)
        # The job's API representation: its result and error come redacted.
        shown = JobSerializer(job, context={"request": request}).data
        info: Any = None
        if job.status in (JobStatus.RUNNING, JobStatus.RETRYING):
            info = {"progress": shown["progress"], "message": shown["progress_message"]}
        elif job.status == JobStatus.SUCCEEDED:
            info = shown["result"]
        elif job.status == JobStatus.FAILED:
            info = shown["error"] or {"type": "", "message": ""}
        return Response(
            {
                "task_id": shown["id"],
                "status": CELERY_STATES[JobStatus(job.status)],
                "result": shown["result"] if job.status == JobStatus.SUCCEEDED else None,
                "info": info,
            }
        )
