"""Request and response shapes of the jobs API. Validation of shape only: the
services validate job types and payloads."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from jobs.api.fields import StrictFloatField
from jobs.models import Job, JobStatus
from jobs.queues import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, QUEUES
from jobs.redaction import redact, redact_text
from jobs.registry import all_job_types
from jobs.services.submission import MAX_DELAY, MAX_IDEMPOTENCY_KEY_LENGTH

MAX_BATCH_SIZE = 1000


def public_job_type_names() -> list[str]:
    return [jt.name for jt in all_job_types() if jt.public]


class JobErrorSerializer(serializers.Serializer[Any]):
    type = serializers.CharField()
    message = serializers.CharField()


class RedactedDictField(serializers.DictField):
    """A ``DictField`` whose output has its secrets redacted (``jobs.redaction.redact``)."""

    def to_representation(self, value: Any) -> dict[str, Any]:
        redacted: dict[str, Any] = redact(super().to_representation(value))
        return redacted


class RedactedCharField(serializers.CharField):
    """A ``CharField`` whose output has its secrets redacted (``jobs.redaction.redact_text``)."""

    def to_representation(self, value: Any) -> str:
        return redact_text(super().to_representation(value))


class RedactedJSONField(serializers.JSONField):
    """A ``JSONField`` whose output has its secrets redacted (``jobs.redaction.redact``)."""

    def to_representation(self, value: Any) -> Any:
        return redact(super().to_representation(value))


# Every API view of a job (detail, list, submissions, the event stream's status
# events, the Celery-style task status) renders it through JobSerializer, which
# redacts payload, result, error and progress message as the admin does (jobs.redaction).
class JobSerializer(serializers.Serializer[Job]):
    """A job as the API shows it (never its traceback).

    Values of secret-looking keys in the payload and result (``password``,
    ``api_key``, ``authorization``, …) and secrets in text (``token=…``, API
    keys, in the error and the progress message) are shown as ``[redacted]``.
    """

    id = serializers.UUIDField(read_only=True)
    type = serializers.CharField(source="job_type", read_only=True)
    status = serializers.ChoiceField(choices=JobStatus.choices, read_only=True)
    queue = serializers.CharField(read_only=True)
    priority = serializers.IntegerField(read_only=True)
    payload = RedactedDictField(read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    max_retries = serializers.IntegerField(read_only=True)
    progress = serializers.IntegerField(read_only=True)
    progress_message = RedactedCharField(read_only=True)
    result = RedactedJSONField(read_only=True, allow_null=True)
    error = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)
    scheduled_for = serializers.DateTimeField(read_only=True, allow_null=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)
    url = serializers.SerializerMethodField()

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict[str, str] | None:
        if not job.error_type and not job.error_message:
            return None
        return {"type": redact_text(job.error_type), "message": redact_text(job.error_message)}

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, job: Job) -> str:
        # One reverse() per serializer (a batch answers 1,000 jobs): the URL of a
        # placeholder id, in which each job's id is substituted.
        template: str | None = self.__dict__.get("_url_template")
        if template is None:
            template = self.__dict__["_url_template"] = reverse(
                "api:job-detail",
                kwargs={"job_id": _URL_PLACEHOLDER},
                request=self.context.get("request"),
            )
        return template.replace(_URL_PLACEHOLDER, str(job.pk))

    def to_representation(self, instance: Job) -> dict[str, Any]:
        """The declared fields' output, without building the fields for each serializer.

        DRF deep-copies all 17 declared fields for every serializer instance,
        a large share of an API submission's CPU (bench/HISTORY.md). The same field classes render
        each value here, from one shared instance each; the declared fields
        still describe the schema, and a test holds both outputs equal.
        """
        job = instance
        return {
            "id": _UUID.to_representation(job.pk),
            "type": str(job.job_type),
            "status": _STATUS.to_representation(job.status),
            "queue": str(job.queue),
            "priority": int(job.priority),
            "payload": None if job.payload is None else _PAYLOAD.to_representation(job.payload),
            "attempts": int(job.attempts),
            "max_retries": int(job.max_retries),
            "progress": int(job.progress),
            "progress_message": _TEXT.to_representation(job.progress_message),
            "result": None if job.result is None else _RESULT.to_representation(job.result),
            "error": self.get_error(job),
            "created_at": _DATETIME.to_representation(job.created_at),
            "scheduled_for": _datetime_or_none(job.scheduled_for),
            "started_at": _datetime_or_none(job.started_at),
            "finished_at": _datetime_or_none(job.finished_at),
            "url": self.get_url(job),
        }


_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
_UUID = serializers.UUIDField()
_STATUS = serializers.ChoiceField(choices=JobStatus.choices)
_PAYLOAD = RedactedDictField()
_RESULT = RedactedJSONField()
_TEXT = RedactedCharField()
_DATETIME = serializers.DateTimeField()


def _datetime_or_none(value: Any) -> Any:
    return None if value is None else _DATETIME.to_representation(value)


class JobTypeChoiceField(serializers.ChoiceField):
    """A public job type name; the choices are read when the serializer is built."""

    default_error_messages = {
        "invalid_choice": (
            '"{input}" is not a job type you can submit; GET /api/v1/job-types/ lists them.'
        )
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=public_job_type_names(), **kwargs)


class JobCreateSerializer(serializers.Serializer[Any]):
    type = JobTypeChoiceField(help_text="A job type name from GET /api/v1/job-types/.")
    # Depth, NUL characters and lone surrogates are refused by the service (jobs.payload_limits).
    payload = serializers.DictField(
        required=False, default=dict, help_text="The job type's payload (see its payload_schema)."
    )
    priority = serializers.IntegerField(
        min_value=MIN_PRIORITY,
        max_value=MAX_PRIORITY,
        default=DEFAULT_PRIORITY,
        help_text="0 (least urgent) to 10 (most urgent).",
    )
    idempotency_key = serializers.CharField(
        required=False,
        allow_null=True,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        trim_whitespace=False,
        help_text="Submitting the same key again returns the first job instead of a new one.",
    )
    delay_seconds = StrictFloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_DELAY.total_seconds(),
        help_text="Run no earlier than this many seconds from now (up to 7 days).",
    )


class JobPageSerializer(serializers.Serializer[Any]):
    """One page of jobs, newest first; follow ``next`` for older ones."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobSerializer(many=True)


class JobBatchCreateSerializer(serializers.Serializer[Any]):
    jobs = JobCreateSerializer(many=True, min_length=1, max_length=MAX_BATCH_SIZE)  # type: ignore[call-arg]


class JobBatchSerializer(serializers.Serializer[Any]):
    jobs = JobSerializer(many=True, read_only=True)


class JobFilterSerializer(serializers.Serializer[Any]):
    """Query parameters of GET /api/v1/jobs/."""

    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    type = serializers.CharField(required=False, max_length=200)
    queue = serializers.ChoiceField(choices=list(QUEUES), required=False)
    created_after = serializers.DateTimeField(
        required=False, help_text="Jobs created at or after this time (ISO 8601)."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Jobs created before this time (ISO 8601)."
    )


class JobTypeSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    queue = serializers.CharField()
    description = serializers.CharField()
    payload_schema = serializers.DictField(help_text="JSON Schema of the payload.")


# --- Compatibility with the ToolBoxAI Celery document ---------------------------


class TaskSubmitSerializer(serializers.Serializer[Any]):
    task_type = serializers.CharField(
        max_length=200,
        help_text='"content_generation", "send_email", or any job type name you can submit.',
    )
    task_data = serializers.DictField(required=False, default=dict)
    priority = serializers.IntegerField(
        min_value=MIN_PRIORITY,
        max_value=MAX_PRIORITY,
        default=DEFAULT_PRIORITY,
        help_text="0 (least urgent) to 10 (most urgent): higher runs first. The reverse of "
        "Celery on Redis, where 0 is the highest priority.",
    )


class TaskSubmittedSerializer(serializers.Serializer[Any]):
    task_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["submitted"])


CELERY_STATES = ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]


class TaskStatusSerializer(serializers.Serializer[Any]):
    task_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=CELERY_STATES)
    result = serializers.JSONField(allow_null=True)
    info = serializers.JSONField(allow_null=True)
