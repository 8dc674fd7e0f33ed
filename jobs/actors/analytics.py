"""``analytics.generate_daily_report``: per-organization roll-up of a UTC day, at 02:00 UTC."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.scheduler.registry import periodic
from jobs.services.reports import daily_report_generate


class DailyReportPayload(PayloadSerializer):
    day = serializers.DateField(
        required=False, help_text="UTC day to report (YYYY-MM-DD); default: yesterday (UTC)."
    )


@job_type(
    "analytics.generate_daily_report",
    queue="analytics",
    payload=DailyReportPayload,
    public=False,
    description="Roll up each organization's jobs of one UTC day into a DailyReport.",
    max_retries=3,
    min_backoff_ms=30_000,
    max_backoff_ms=600_000,
    time_limit_ms=900_000,
    soft_time_limit_ms=840_000,
)
def generate_daily_report(*, day: str | None = None) -> dict[str, Any]:
    """Write the reports of ``day`` (default: the previous UTC day)."""
    report_day = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    reports = daily_report_generate(day=report_day)
    return {"day": report_day.isoformat(), "organizations": len(reports)}


def _previous_day(tick: datetime) -> dict[str, Any]:
    # The day is fixed by the tick, so a late or retried run reports the same day.
    return {"day": (tick.date() - timedelta(days=1)).isoformat()}


periodic(
    "analytics.daily_report",
    job_type="analytics.generate_daily_report",
    cron="0 2 * * *",
    payload=_previous_day,
    grace_ms=12 * 3_600_000,
    description="Daily at 02:00 UTC: reports of the previous UTC day.",
)
