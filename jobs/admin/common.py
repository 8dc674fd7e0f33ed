"""What the job admin's pages share: scope, status badges, escaped JSON, durations.

Everything a job carries is user data: it is rendered through ``format_html``
(which escapes) and redacted (``jobs.redaction``); nothing here calls
``mark_safe`` on it.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.models import JobStatus
from jobs.redaction import redact
from tenants.models import Organization
from tenants.selectors import organizations_for_user


def visible_organizations(request: HttpRequest) -> QuerySet[Organization] | None:
    """The organizations a request's user may see; None means every job (superusers)."""
    if request.user.is_superuser:
        return None
    return organizations_for_user(user=request.user)


def status_badge(status: str) -> SafeString:
    """A coloured badge; the colours are in jobs/admin.css (the CSP refuses style attributes)."""
    return format_html(
        '<span class="job-status job-status-{}">{}</span>',
        status,
        JobStatus(status).label if status in JobStatus else status,
    )


def pretty_json(value: Any) -> SafeString:
    """Redacted, indented JSON in an escaped ``<pre>``."""
    if value is None:
        return format_html("<span>{}</span>", "—")
    text = json.dumps(redact(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="job-json">{}</pre>', text)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def short_id(job_id: Any) -> str:
    """The first eight characters of a job id, as the admin lists it."""
    return str(job_id)[:8]
