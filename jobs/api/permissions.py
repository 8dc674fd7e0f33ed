"""Permissions of the jobs API."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.api.authentication import request_organization


class HasOrganization(BasePermission):
    """The request acts for one organization: an API key's, or a staff user's choice."""

    def has_permission(self, request: Request, view: Any) -> bool:
        request_organization(request)
        return True
