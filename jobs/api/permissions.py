"""Permissions of the jobs API: an organization to act for, and the API key's scope."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from tenants.api.authentication import (
    MissingScope,
    request_organization,
    request_require_scope,
    request_scopes,
)
from tenants.models import ApiScope


class HasOrganization(BasePermission):
    """The request acts for one organization: an API key's, or a staff user's choice."""

    def has_permission(self, request: Request, view: Any) -> bool:
        request_organization(request)
        return True


def required_scope(request: Request, view: Any) -> str | tuple[str, ...]:
    """The scope an operation needs (or scopes, any one of which will do): the view's
    ``required_scopes`` for the method, else ``jobs:read`` to read and ``jobs:write`` to change."""
    declared: dict[str, str | tuple[str, ...]] = getattr(view, "required_scopes", {})
    scope = declared.get(request.method or "GET")
    if scope is not None:
        return scope
    if request.method in SAFE_METHODS:
        return ApiScope.JOBS_READ.value
    return ApiScope.JOBS_WRITE.value


class HasScope(BasePermission):
    """The request's API key (or session) holds the scope of the operation; else 403
    ``missing_scope`` naming it. Runs after :class:`HasOrganization`, so an inactive
    organization is told so first."""

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = required_scope(request, view)
        if isinstance(needed, str):
            request_require_scope(request, needed)
        elif not set(needed) & request_scopes(request):
            raise MissingScope(needed[0])
        return True
