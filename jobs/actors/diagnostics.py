"""``diagnostics.echo``: echo, sleep, fail N times. For smoke tests, demos and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from rest_framework import serializers

from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.runtime import current_job


class EchoFailure(Exception):
    """Raised by ``diagnostics.echo`` on the attempts it was asked to fail."""


class EchoPayload(PayloadSerializer):
    message = serializers.CharField(max_length=10_000, allow_blank=True, trim_whitespace=False)
    sleep_seconds = serializers.FloatField(min_value=0, max_value=60, default=0)
    fail_times = serializers.IntegerField(min_value=0, max_value=10, default=0)


@job_type(
    "diagnostics.echo",
    queue="default",
    payload=EchoPayload,
    description="Echo a message after an optional sleep, failing the first N attempts.",
    max_retries=3,
    min_backoff_ms=1_000,
    max_backoff_ms=2_000,
)
def echo(*, message: str, sleep_seconds: float = 0, fail_times: int = 0) -> dict[str, Any]:
    """Sleep, fail the first ``fail_times`` attempts, then return the message."""
    job = current_job()
    attempt = job.attempt if job is not None else 1
    if sleep_seconds:
        _sleep(sleep_seconds)
    if attempt <= fail_times:
        raise EchoFailure(f"Failing attempt {attempt} of {fail_times} on purpose (fail_times).")
    return {"message": message}


def _sleep(seconds: float) -> None:
    # Sleep in slices so a cancel request is seen within a quarter of a second.
    job = current_job()
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, 0.25))
        if job is not None and remaining > 0.25:
            job.checkpoint()
