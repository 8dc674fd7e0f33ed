"""Transactional email through Django's SMTP backend: the ``default`` mailer (SMTP_* settings)."""

from __future__ import annotations

import smtplib
from email.utils import make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.html import strip_tags

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError
from jobs.integrations import ProviderUnavailable, redact


def send_mail(*, to_email: str, subject: str, html_content: str, job_id: str) -> str:
    """Send one email over SMTP; return the Message-ID it was sent with."""
    mailer: dict[str, Any] = dict(settings.MAILERS["default"])
    options: dict[str, Any] = dict(mailer.get("OPTIONS") or {})
    password = str(options.get("password") or "")
    domain = jobs_settings.email_from.rpartition("@")[2].rstrip(">") or None
    message_id = make_msgid(idstring=job_id.replace("-", ""), domain=domain)
    message = EmailMultiAlternatives(
        subject=subject,
        body=strip_tags(html_content),
        from_email=jobs_settings.email_from,
        to=[to_email],
        headers={"Message-ID": message_id, "X-ToolBoxAI-Job": job_id},
    )
    message.attach_alternative(html_content, "text/html")
    try:
        message.send(using="default")
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentJobError(
            f"The SMTP server refused the recipient {to_email!r}: "
            f"{redact(str(exc.recipients), password)}."
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentJobError(
            f"The SMTP server refused our login ({exc.smtp_code}); check SMTP_USER and "
            "SMTP_PASSWORD."
        ) from None
    except smtplib.SMTPResponseException as exc:
        text = redact(str(exc.smtp_error), password)
        if 400 <= exc.smtp_code < 500:
            raise ProviderUnavailable(
                f"The SMTP server deferred ({exc.smtp_code}): {text}"
            ) from None
        raise PermanentJobError(
            f"The SMTP server refused the email ({exc.smtp_code}): {text}"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ProviderUnavailable(
            f"The SMTP server {options.get('host')}:{options.get('port')} is unreachable: "
            f"{redact(str(exc), password)}"
        ) from None
    return message_id
