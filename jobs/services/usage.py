"""Monthly usage per organization, counted from the ledger (``tenant.check_usage_limits``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db.models import Count
from django.utils import timezone

from jobs.models import Job
from tenants.models import OrganizationUsage
from tenants.services import organization_usage_record


def usage_check(*, now: datetime | None = None) -> list[OrganizationUsage]:
    """Record each organization's jobs this UTC month against its quota, flagging 80 % and 100 %.

    On the first day of a month the previous month is recorded once more, so
    its last half hour is counted too.
    """
    now = (now or timezone.now()).astimezone(UTC)
    month = now.date().replace(day=1)
    months = [month]
    if now.day == 1:
        months.insert(0, _previous_month(month))
    rows: list[OrganizationUsage] = []
    for start in months:
        rows = organization_usage_record(month=start, jobs_submitted=jobs_per_organization(start))
    return rows


def jobs_per_organization(month: date) -> dict[int, int]:
    """Jobs each organization submitted in the UTC month starting on ``month``."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    rows = (
        Job.objects.filter(organization__isnull=False, created_at__gte=start, created_at__lt=end)
        .values("organization_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["organization_id"]: row["n"] for row in rows}


def _previous_month(month: date) -> date:
    return date(month.year - 1, 12, 1) if month.month == 1 else date(month.year, month.month - 1, 1)
