"""Errors raised by the tenants app."""

from __future__ import annotations


class TenantsError(Exception):
    """Raised when the tenants app refuses an operation; the root of every tenants error."""

    code = "tenants_error"


class OrganizationNotFound(TenantsError):
    """Raised when an organization slug does not exist."""

    code = "organization_not_found"


class UserNotFound(TenantsError):
    """Raised when a username does not exist."""

    code = "user_not_found"


class NotAMember(TenantsError):
    """Raised when a user does not belong to the organization named."""

    code = "not_a_member"


class OrganizationExists(TenantsError):
    """Raised when creating an organization whose slug is taken."""

    code = "organization_exists"


class InvalidSlug(TenantsError):
    """Raised when an organization slug has characters other than lowercase letters, digits and hyphens."""

    code = "invalid_slug"


class ApiKeyNotFound(TenantsError):
    """Raised when no API key has the prefix given."""

    code = "api_key_not_found"


class InvalidScope(TenantsError):
    """Raised when an API key is given a scope that does not exist."""

    code = "invalid_scope"
