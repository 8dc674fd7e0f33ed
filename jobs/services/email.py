"""Sending transactional email: SendGrid when SENDGRID_API_KEY is set, else SMTP."""

from __future__ import annotations

from typing import Any

from jobs.conf import jobs_settings
from jobs.integrations import sendgrid, smtp
from jobs.services.deliveries import delivery_send_once


def email_send(
    *, job_id: str | None, attempt: int, to_email: str, subject: str, html_content: str
) -> dict[str, Any]:
    """Send one email at most once per job; return the provider and its message id."""
    use_sendgrid = bool(jobs_settings.sendgrid_api_key)
    provider = "sendgrid" if use_sendgrid else "smtp"
    backend = sendgrid if use_sendgrid else smtp

    def send() -> str:
        return backend.send_mail(
            to_email=to_email, subject=subject, html_content=html_content, job_id=job_id or ""
        )

    if job_id is None:  # called outside a worker: nothing to deduplicate against
        return {"provider": provider, "message_id": send(), "already_sent": False}
    result = delivery_send_once(
        job_id=job_id, channel="email", provider=provider, attempt=attempt, send=send
    )
    return {
        "provider": result.provider,
        "message_id": result.provider_message_id,
        "already_sent": not result.sent_now,
    }
