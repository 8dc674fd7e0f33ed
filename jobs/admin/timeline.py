"""A job's timeline: ledger times, attempts and audit events, oldest first."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs.models import Job
from jobs.redaction import redact_text


def build_timeline(job: Job) -> list[tuple[datetime, str, str]]:
    """Everything that happened to a job, oldest first: ledger times, attempts, audit events."""
    rows: list[tuple[datetime, str, str]] = [(job.created_at, "submitted", f"queue {job.queue}")]
    if job.scheduled_for is not None:
        rows.append((job.scheduled_for, "scheduled for", ""))
    for attempt in job.attempt_set.all():
        rows.append((attempt.started_at, f"attempt {attempt.number} started", attempt.worker_id))
        if attempt.finished_at is not None:
            detail = (
                f"{attempt.error_type}: {redact_text(attempt.error_message)}"
                if attempt.error_type
                else ""
            )
            rows.append(
                (attempt.finished_at, f"attempt {attempt.number} {attempt.outcome}", detail)
            )
    for event in job.events.select_related("user").all():
        who = event.user.get_username() if event.user is not None else "system"
        rows.append((event.created_at, event.get_kind_display(), f"by {who} via {event.via}"))
    if job.cancel_requested_at is not None:
        rows.append((job.cancel_requested_at, "cancel requested", ""))
    if job.dead_lettered_at is not None:
        rows.append((job.dead_lettered_at, "dead-lettered", "retries exhausted"))
    if job.finished_at is not None:
        rows.append((job.finished_at, f"finished: {job.status}", ""))
    return sorted(rows, key=lambda row: row[0])


def timeline_table(job: Job) -> SafeString:
    """:func:`build_timeline` as an escaped HTML table."""
    body = format_html_join(
        "\n",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], what, detail)
            for when, what, detail in build_timeline(job)
        ),
    )
    return format_html(
        '<table class="job-timeline"><thead><tr><th>when (UTC)</th><th>what</th>'
        "<th>detail</th></tr></thead><tbody>{}</tbody></table>",
        body,
    )
