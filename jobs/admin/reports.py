"""Read-only admin for daily reports and provider deliveries (the jobs write them)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.models import DailyReport, ProviderDelivery
from tenants.models import Membership


class _ReadOnlyAdmin[M: DailyReport | ProviderDelivery](admin.ModelAdmin[M]):
    """Read-only, and scoped: staff who are not superusers see only their organizations."""

    #: Lookup from the model to its organization id.
    organization_lookup = "organization_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet[M]:
        qs = super().get_queryset(request)
        user = request.user
        if user.is_superuser:
            return qs
        org_ids = Membership.objects.filter(user_id=user.pk or 0).values("organization_id")
        return qs.filter(**{f"{self.organization_lookup}__in": org_ids})

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
    organization_lookup = "job__organization_id"
    list_display = ["job", "channel", "provider", "status", "provider_message_id", "sent_at"]
    list_filter = ["channel", "provider", "status"]
    search_fields = ["=job__id", "provider_message_id"]
    raw_id_fields = ["job"]
