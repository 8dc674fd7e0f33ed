"""Transactional email through the SendGrid v3 API (``POST /v3/mail/send``)."""

from __future__ import annotations

import logging
import urllib.error

from dramatiq import Retry

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError
from jobs.integrations import ProviderUnavailable, redact, retry_after_ms

logger = logging.getLogger(__name__)


def send_mail(*, to_email: str, subject: str, html_content: str, job_id: str) -> str:
    """Send one email; return SendGrid's ``X-Message-Id`` (empty if it sent none).

    The job id travels as a custom arg, so the provider's event webhooks can be
    traced back to the job. SENDGRID_HOST points the client at another host.
    """
    # Imported on first use, like the OpenAI SDK: no process pays for it at start.
    from python_http_client.exceptions import HTTPError, TooManyRequestsError
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import CustomArg, Mail

    api_key = jobs_settings.sendgrid_api_key
    client = SendGridAPIClient(api_key=api_key, host=jobs_settings.sendgrid_host)
    mail = Mail(
        from_email=jobs_settings.email_from,
        to_emails=to_email,
        subject=subject,
        html_content=html_content,
    )
    mail.custom_arg = CustomArg("job_id", job_id)
    try:
        response = client.client.mail.send.post(
            request_body=mail.get(), timeout=jobs_settings.email_timeout_ms / 1000
        )
    except TooManyRequestsError as exc:
        raise Retry("SendGrid rate limit (429).", delay=retry_after_ms(exc.headers)) from None
    except HTTPError as exc:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
        text = redact(body, api_key)
        if int(exc.status_code) >= 500:
            raise ProviderUnavailable(f"SendGrid answered {exc.status_code}: {text}") from None
        raise PermanentJobError(
            f"SendGrid refused the email ({exc.status_code}): {text}. Retrying cannot help; "
            "check SENDGRID_API_KEY, EMAIL_FROM (a verified sender) and the payload."
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ProviderUnavailable(
            f"SendGrid at {jobs_settings.sendgrid_host} is unreachable: {redact(str(exc), api_key)}"
        ) from None
    headers = response.headers
    message_id = headers.get("X-Message-Id", "") if headers is not None else ""
    return str(message_id or "")
