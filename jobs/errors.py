"""Errors raised by the jobs app. Each message says what went wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class JobsError(Exception):
    """Raised when the jobs app refuses an operation; the root of every jobs error."""

    code = "jobs_error"
    #: Position of the offending job in a batch submission, when there is one.
    index: int | None = None


class UnknownJobType(JobsError):
    """Raised when a submission names a job type that is not registered."""

    code = "unknown_job_type"


class InvalidPayload(JobsError):
    """Raised when a payload fails its job type's validation.

    Parameters:
      errors: field name → list of messages, as DRF serializers report them.
    """

    code = "invalid_payload"

    def __init__(self, message: str, *, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.errors: dict[str, Any] = dict(errors or {})


class PayloadTooLarge(InvalidPayload):
    """Raised when a payload's JSON encoding exceeds JOBS_MAX_PAYLOAD_BYTES."""

    code = "payload_too_large"


class InvalidSubmission(JobsError):
    """Raised when a submission's options (priority, delay, idempotency key) are out of range."""

    code = "invalid_submission"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownQueue(JobsError):
    """Raised when an operator names a queue that workers do not consume."""

    code = "unknown_queue"


class InvalidTransition(JobsError):
    """Raised when a job cannot move from its current status to the one asked for."""

    code = "invalid_transition"


class JobNotFound(JobsError):
    """Raised when a job id does not exist in the caller's organization."""

    code = "job_not_found"


class DeadLetterGroupNotFound(JobNotFound):
    """Raised when a dead-letter group id has no dead letters in the caller's organization."""

    code = "dead_letter_group_not_found"


class PermanentJobError(JobsError):
    """Raised inside a job to fail it at once, without using its remaining retries."""

    code = "permanent_error"


class ResultTooLarge(PermanentJobError):
    """Raised when a job returns a result larger than JOBS_MAX_RESULT_BYTES."""

    code = "result_too_large"


class ResultNotSerializable(PermanentJobError):
    """Raised when a job returns a value that JSON cannot encode."""

    code = "result_not_serializable"


class JobCancelled(JobsError):
    """Raised inside a running job at a checkpoint once a cancel has been requested."""

    code = "cancelled"


class SoftTimeLimitExceeded(JobsError):
    """Raised inside a running job when it passes its soft time limit, so it can clean up."""

    code = "soft_time_limit"


class SubmissionRefused(JobsError):
    """Raised when an organization may not submit now; the API answers 429 or 403.

    Parameters:
      retry_after_seconds: when a retry may succeed, for the ``Retry-After`` header.
    """

    code = "submission_refused"

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class RateLimited(SubmissionRefused):
    """Raised when an organization submits faster than its max_submissions_per_minute."""

    code = "rate_limited"


class QuotaExceeded(SubmissionRefused):
    """Raised when an organization has used its monthly_job_quota."""

    code = "quota_exceeded"


class OrganizationInactive(SubmissionRefused):
    """Raised when an inactive organization submits a job."""

    code = "organization_inactive"


class InvalidSchedule(JobsError):
    """Raised when a periodic schedule's cron expression or options are invalid."""

    code = "invalid_schedule"


class BrokerUnavailable(JobsError):
    """Raised when Redis cannot be reached and nothing was created; retry later."""

    code = "broker_unavailable"
