"""Writes to the ledger. Views, admin actions, commands and actors call these."""

from __future__ import annotations

from jobs.services.control import (
    job_cancel,
    job_cancel_requested,
    job_report_progress,
    job_retry,
)
from jobs.services.submission import (
    JobRequest,
    Submission,
    job_message,
    job_submit,
    job_submit_many,
    validate_payload,
)
from jobs.services.transitions import (
    AttemptEnd,
    StartDecision,
    StartVerdict,
    job_adopt_message,
    job_attempt_finish,
    job_attempt_start,
)

__all__ = [
    "AttemptEnd",
    "JobRequest",
    "StartDecision",
    "StartVerdict",
    "Submission",
    "job_adopt_message",
    "job_attempt_finish",
    "job_attempt_start",
    "job_cancel",
    "job_cancel_requested",
    "job_message",
    "job_report_progress",
    "job_retry",
    "job_submit",
    "job_submit_many",
    "validate_payload",
]
