"""Compatibility with the ToolBoxAI Celery document: ``/tasks/submit`` and ``/tasks/status/{id}``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.serializers import (
    JobSerializer,
    TaskStatusSerializer,
    TaskSubmitSerializer,
    TaskSubmittedSerializer,
)
from jobs.errors import UnknownJobType
from jobs.models import JobStatus
from jobs.registry import JobType, get_job_type
from jobs.selectors import job_get
from jobs.services import job_submit
from tenants.api.authentication import request_organization

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
        description="Submit a job as the ToolBoxAI Celery document does. Also answers at "
        "`/api/v1/tasks/submit/` (with a trailing slash). `priority` runs from 0 (least "
        "urgent) to 10 (most urgent), the reverse of Celery on Redis.",
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
        description="A job's state in Celery's words. Also answers at "
        "`/api/v1/tasks/status/{task_id}/` (with a trailing slash). `info` is the progress "
        "in `STARTED`, the failed attempt's error in `RETRY` and the error in `FAILURE`.",
        tags=["compatibility"],
    )
    def get(self, request: Request, task_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=task_id)
        # The job's API representation: its result and error come redacted.
        shown = JobSerializer(job, context={"request": request}).data
        info: Any = None
        if job.status == JobStatus.RUNNING:
            info = {"progress": shown["progress"], "message": shown["progress_message"]}
        elif job.status == JobStatus.SUCCEEDED:
            info = shown["result"]
        elif job.status in (JobStatus.RETRYING, JobStatus.FAILED):
            # As Celery's: the exception of the attempt that failed (the last one in FAILURE).
            info = shown["error"] or {"type": "", "message": ""}
        return Response(
            {
                "task_id": shown["id"],
                "status": CELERY_STATES[JobStatus(job.status)],
                "result": shown["result"] if job.status == JobStatus.SUCCEEDED else None,
                "info": info,
            }
        )


# Celery-era clients (and DRF routers) add a trailing slash; the schema lists each
# operation once, under the Celery document's path, and says so.
@extend_schema(exclude=True)
class TaskSubmitSlashView(TaskSubmitView):
    """``POST /api/v1/tasks/submit/``: the same as ``/api/v1/tasks/submit``."""


@extend_schema(exclude=True)
class TaskStatusSlashView(TaskStatusView):
    """``GET /api/v1/tasks/status/{task_id}/``: the same as without the slash."""
