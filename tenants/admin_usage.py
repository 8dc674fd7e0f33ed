"""Admin for monthly usage and its quota flags (written by ``tenant.check_usage_limits``)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.admin_scoping import OrganizationScopedAdmin
from tenants.models import OrganizationUsage


@admin.register(OrganizationUsage)
class OrganizationUsageAdmin(OrganizationScopedAdmin[OrganizationUsage]):
    """Read-only (the usage job writes these rows), and scoped to the user's organizations."""

    list_display = [
        "organization",
        "month",
        "jobs_submitted",
        "quota",
        "percent_of_quota",
        "flag",
        "flagged_at",
        "updated_at",
    ]
    list_filter = ["flag", "month"]
    search_fields = ["organization__slug", "organization__name"]
    ordering = ["-month", "organization__slug"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrganizationUsage]:
        return super().get_queryset(request).select_related("organization")

    @admin.display(description="% of quota")
    def percent_of_quota(self, obj: OrganizationUsage) -> str:
        percent = obj.percent_of_quota
        return "unlimited" if percent is None else f"{percent:g} %"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
