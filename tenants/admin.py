from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.admin_scoping import OrganizationScopedAdmin
from tenants.models import ApiKey, ApiScope, Membership, Organization
from tenants.services import api_key_cache_invalidate, api_key_revoke, api_key_scopes_clean


class _TenantsAdmin[M: models.Model](OrganizationScopedAdmin[M]):
    """Scoped, and every write makes every web process forget the API keys it trusts.

    A key is trusted with its membership and organization as read: a changed
    active flag or limit, a moved or deleted membership, must not wait out
    API_KEY_CACHE_SECONDS.
    """

    def save_model(self, request: HttpRequest, obj: M, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        api_key_cache_invalidate()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        api_key_cache_invalidate()

    def delete_model(self, request: HttpRequest, obj: M) -> None:
        super().delete_model(request, obj)
        api_key_cache_invalidate()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[M]) -> None:
        super().delete_queryset(request, queryset)
        api_key_cache_invalidate()


class MembershipInline(admin.TabularInline[Membership, Organization]):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(_TenantsAdmin[Organization]):
    organization_path = ""
    list_display = [
        "slug",
        "name",
        "is_active",
        "max_submissions_per_minute",
        "max_concurrent_jobs",
        "monthly_job_quota",
    ]
    list_filter = ["is_active"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(_TenantsAdmin[Membership]):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "organization__slug"]
    autocomplete_fields = ["user", "organization"]


class ApiKeyForm(forms.ModelForm[ApiKey]):
    """The key's name and scopes (checkboxes, one per :class:`ApiScope`)."""

    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="What the key may do (docs/api.md, Scopes). None: the key can do nothing.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]

    def clean_scopes(self) -> list[str]:
        return api_key_scopes_clean(self.cleaned_data.get("scopes") or [])


@admin.register(ApiKey)
class ApiKeyAdmin(_TenantsAdmin[ApiKey]):
    """Keys are issued with `manage.py createapikey`; the admin lists them, sets their
    scopes and revokes them.

    Revoking goes through ``api_key_revoke`` (the action), which every web
    process hears at once; the form cannot set ``revoked_at`` itself. A change
    of scopes is saved through ``_TenantsAdmin.save_model``, which makes every
    web process forget the keys it trusts.
    """

    form = ApiKeyForm
    organization_path = "membership__organization"
    list_display = [
        "name",
        "prefix",
        "membership",
        "scope_list",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["membership__organization"]
    search_fields = ["name", "prefix", "membership__user__username"]
    readonly_fields = ["membership", "prefix", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return " ".join(obj.scopes) or "none"

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
