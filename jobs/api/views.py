"""Thin views of the jobs API: parse, call a service or selector, shape the output."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.api.pagination import JobPagination
from jobs.api.schema import JOB_ID, PAGE_PARAMETERS, payload_json_schema
from jobs.api.serializers import (
    JobBatchCreateSerializer,
    JobBatchSerializer,
    JobCreateSerializer,
    JobFilterSerializer,
    JobPageSerializer,
    JobSerializer,
    JobTypeSerializer,
    public_job_type_names,
)
from jobs.registry import all_job_types
from jobs.selectors import job_get, jobs_for_organization
from jobs.services import JobRequest, job_cancel, job_retry, job_submit, job_submit_many
from tenants.api.authentication import request_organization

VIA = "api"


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
    for every serializer instance, a measurable share of an API submission's
    CPU (bench/HISTORY.md).
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
            *PAGE_PARAMETERS,
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
    @extend_schema(parameters=[JOB_ID], responses=JobSerializer, operation_id="jobs_retrieve")
    def get(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        return Response(JobSerializer(job, context={"request": request}).data)


class JobCancelView(APIView):
    """Cancel a job. A running job stops at its next progress report or checkpoint."""

    @extend_schema(
        parameters=[JOB_ID], request=None, responses=JobSerializer, operation_id="jobs_cancel"
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        job = job_cancel(job=job, user=_user(request), via=VIA)
        return Response(JobSerializer(job, context={"request": request}).data)


class JobRetryView(APIView):
    """Queue a failed or cancelled job again, with a fresh retry budget."""

    @extend_schema(
        parameters=[JOB_ID], request=None, responses=JobSerializer, operation_id="jobs_retry"
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_get(organization=request_organization(request), job_id=job_id)
        job = job_retry(job=job, enforce_limits=True, user=_user(request), via=VIA)
        return Response(JobSerializer(job, context={"request": request}).data)
