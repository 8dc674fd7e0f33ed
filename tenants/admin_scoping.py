"""One scope for every admin of per-organization rows: staff see and change only their own.

A superuser sees every row. Any other staff user sees the rows of the
organizations they belong to (``tenants.selectors.organizations_for_user``),
whatever model permissions they hold: the change list, the change form (other
rows answer 404), the organization filter's choices, the choices of every
foreign key to an organization or a membership (a row cannot be moved to
another organization), and the autocomplete results other admins ask this one
for (Django's autocomplete reads the target admin's ``get_queryset``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.models import Membership, Organization
from tenants.selectors import organizations_for_user

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise


def visible_organizations(request: HttpRequest) -> QuerySet[Organization] | None:
    """The organizations whose rows the request's user may see; None means all (superusers)."""
    if request.user.is_superuser:
        return None
    return organizations_for_user(user=request.user)


class ScopedOrganizationFilter(admin.RelatedFieldListFilter):
    """The organization list filter, offering only the user's organizations."""

    def field_choices(
        self, field: Any, request: HttpRequest, model_admin: Any
    ) -> list[tuple[str, str | _StrPromise]]:
        ordering = self.field_admin_ordering(field, request, model_admin)
        organizations = visible_organizations(request)
        if organizations is None:
            return list(field.get_choices(include_blank=False, ordering=ordering))
        return list(
            field.get_choices(
                include_blank=False,
                ordering=ordering,
                limit_choices_to={"pk__in": organizations.values("pk")},
            )
        )


class OrganizationScopedAdmin[M: models.Model](admin.ModelAdmin[M]):
    """A ModelAdmin whose rows, filters and foreign-key choices are scoped to the user's organizations.

    Parameters:
      organization_path: the lookup from the model to its organization
        (``organization``, ``membership__organization``, ``job__organization``);
        empty for the Organization model itself. A ``list_filter`` entry equal
        to it is replaced by :class:`ScopedOrganizationFilter`.
    """

    organization_path: ClassVar[str] = "organization"

    def get_queryset(self, request: HttpRequest) -> QuerySet[M]:
        queryset = super().get_queryset(request)
        organizations = visible_organizations(request)
        if organizations is None:
            return queryset
        lookup = f"{self.organization_path}__in" if self.organization_path else "pk__in"
        return queryset.filter(**{lookup: organizations.values("pk")})

    def get_list_filter(self, request: HttpRequest) -> Any:
        return [
            (entry, ScopedOrganizationFilter)
            if self.organization_path and entry == self.organization_path
            else entry
            for entry in super().get_list_filter(request)
        ]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        organizations = visible_organizations(request)
        if organizations is not None:
            if db_field.related_model is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk__in=organizations.values("pk"))
            elif db_field.related_model is Membership:
                kwargs["queryset"] = Membership.objects.filter(
                    organization__in=organizations.values("pk")
                )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
