"""Reads for tenants."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from tenants.models import Organization


def organizations_for_user(*, user: User | AnonymousUser) -> QuerySet[Organization]:
    """Organizations a user belongs to (every one for a superuser)."""
    if getattr(user, "is_superuser", False):
        return Organization.objects.all()
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user).distinct()
