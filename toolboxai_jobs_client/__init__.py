"""A typed Python client of the toolboxai jobs REST API (httpx, no Django).

from toolboxai_jobs_client import Client

with Client("https://jobs.example.com", api_key) as jobs:
    job = jobs.submit("diagnostics.echo", {"message": "hi"})
    done = jobs.wait(job.id, timeout=60)
    print(done.status, done.result)
"""

from __future__ import annotations

from toolboxai_jobs_client.client import Client, DeadLetters
from toolboxai_jobs_client.errors import (
    ApiError,
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    JobsClientError,
    MissingScope,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    WaitTimeout,
)
from toolboxai_jobs_client.models import (
    DeadLetterGroup,
    DeadLetterResult,
    Job,
    JobError,
    JobRequest,
)

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DeadLetterGroup",
    "DeadLetterResult",
    "DeadLetters",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobRequest",
    "JobsClientError",
    "MissingScope",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "WaitTimeout",
]
