"""Writes to the ledger. Views, admin actions, commands and actors call these.

The public entry points are re-exported here (``from jobs.services import
job_submit``); modules inside this package import each other by their own
names, never this package.
"""

from __future__ import annotations

from jobs.services.control import (
    job_cancel,
    job_cancel_requested,
    job_report_progress,
    job_retry,
)
from jobs.services.messages import job_message
from jobs.services.submission import (
    JobRequest,
    Submission,
    job_submit,
    job_submit_many,
    validate_payload,
)

__all__ = [
    "JobRequest",
    "Submission",
    "job_cancel",
    "job_cancel_requested",
    "job_message",
    "job_report_progress",
    "job_retry",
    "job_submit",
    "job_submit_many",
    "validate_payload",
]
