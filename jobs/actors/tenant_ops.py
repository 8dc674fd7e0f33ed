"""``tenant.check_usage_limits``: monthly usage against quota, every 30 minutes."""

from __future__ import annotations

from typing import Any

from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.scheduler.registry import periodic
from jobs.services.usage import usage_check
from tenants.models import UsageFlag


class UsagePayload(PayloadSerializer):
    pass


@job_type(
    "tenant.check_usage_limits",
    queue="tenant_ops",
    payload=UsagePayload,
    public=False,
    description="Record each organization's monthly usage; flag 80 % and 100 % of quota.",
    max_retries=2,
    min_backoff_ms=10_000,
    max_backoff_ms=120_000,
    time_limit_ms=300_000,
    soft_time_limit_ms=240_000,
)
def check_usage_limits() -> dict[str, Any]:
    """Count this month's jobs per organization from the ledger and record them."""
    rows = usage_check()
    return {
        "month": rows[0].month.isoformat() if rows else None,
        "organizations": len(rows),
        "at_80_percent": sorted(r.organization.slug for r in rows if r.flag == UsageFlag.WARNING),
        "at_100_percent": sorted(r.organization.slug for r in rows if r.flag == UsageFlag.EXCEEDED),
    }


periodic(
    "tenant.check_usage_limits",
    job_type="tenant.check_usage_limits",
    cron="*/30 * * * *",
    description="Every 30 minutes.",
)
