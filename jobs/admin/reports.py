"""Read-only admin for daily reports and provider deliveries (the jobs write them)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from jobs.models import DailyReport, ProviderDelivery
from tenants.admin_scoping import OrganizationScopedAdmin


class _ReadOnlyAdmin[M: DailyReport | ProviderDelivery](OrganizationScopedAdmin[M]):
    """Read-only, and scoped: staff who are not superusers see only their organizations."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DailyReport)
class DailyReportAdmin(_ReadOnlyAdmin[DailyReport]):
    list_display = [
        "day",
        "organization",
        "total_jobs",
        "p50_duration_ms",
        "p95_duration_ms",
        "failure_rate",
        "generated_at",
    ]
    list_filter = ["day", "organization"]
    search_fields = ["organization__slug"]
    date_hierarchy = "day"


@admin.register(ProviderDelivery)
class ProviderDeliveryAdmin(_ReadOnlyAdmin[ProviderDelivery]):
    organization_path = "job__organization"
    list_display = ["job", "channel", "provider", "status", "provider_message_id", "sent_at"]
    list_filter = ["channel", "provider", "status"]
    search_fields = ["=job__id", "provider_message_id"]
    raw_id_fields = ["job"]
