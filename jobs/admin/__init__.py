"""Django admin for jobs: the job list and detail, actions, dead letters, the dashboard,
and the read-only reports the jobs write (daily reports, provider deliveries)."""

from __future__ import annotations

from jobs.admin.jobs import JobAdmin
from jobs.admin.reports import DailyReportAdmin, ProviderDeliveryAdmin

__all__ = ["DailyReportAdmin", "JobAdmin", "ProviderDeliveryAdmin"]
