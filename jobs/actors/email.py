"""``email.send_transactional``: one email through SendGrid or SMTP, sent at most once."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.conf import jobs_settings
from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.runtime import current_job
from jobs.services.email import email_send


class EmailPayload(PayloadSerializer):
    to_email = serializers.EmailField(max_length=254)
    subject = serializers.CharField(max_length=998)
    html_content = serializers.CharField(max_length=200_000, trim_whitespace=False)


@job_type(
    "email.send_transactional",
    queue="email",
    payload=EmailPayload,
    description="Send a transactional email (SendGrid when configured, else SMTP).",
    max_retries=5,
    min_backoff_ms=5_000,
    max_backoff_ms=300_000,
    time_limit_ms=60_000,
    soft_time_limit_ms=45_000,
    # Read at run time, so a changed EMAIL_RATE_LIMIT_PER_MINUTE applies without a redeploy.
    rate_limit_per_minute=lambda: jobs_settings.email_rate_limit_per_minute,
)
def send_transactional(*, to_email: str, subject: str, html_content: str) -> dict[str, Any]:
    """Send the email unless an earlier delivery of this job already did."""
    job = current_job()
    return email_send(
        job_id=job.job_id if job else None,
        attempt=job.attempt if job else 1,
        to_email=to_email,
        subject=subject,
        html_content=html_content,
    )
