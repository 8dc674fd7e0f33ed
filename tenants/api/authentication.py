"""API authentication: API keys fix the organization; staff sessions choose one.

``Authorization: Bearer <key>`` (or ``Token <key>``) authenticates as the
key's member, in the key's organization, with the key's scopes. A staff user
logged into the browsable API picks one of their organizations with
``X-Organization: <slug>`` (optional when they belong to exactly one); a staff
session holds every scope but ``ops``, a superuser's every scope.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from tenants.models import ApiKey, ApiScope, Organization
from tenants.selectors import organizations_for_user
from tenants.services import api_key_authenticate

KEYWORDS = ("bearer", "token")
ORGANIZATION_HEADER = "X-Organization"


class OrganizationInactive(exceptions.PermissionDenied):
    """Raised when a request acts for a deactivated organization (403 on every endpoint)."""

    default_detail = "This organization is inactive; an administrator can reactivate it."
    default_code = "organization_inactive"


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>`` or ``Token <key>``; ``request.auth`` is the ApiKey."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header; send 'Authorization: Bearer <api key>'."
            )
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API key has invalid characters.") from None
        api_key = api_key_authenticate(raw=raw)
        if api_key is None or not api_key.membership.user.is_active:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API key. Create one with "
                "`python manage.py createapikey <username> --organization <slug>`."
            )
        return api_key.membership.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403 to anonymous requests.
        return 'Bearer realm="api"'


class MissingScope(exceptions.PermissionDenied):
    """Raised when the request's API key lacks the scope an operation needs (403).

    Parameters:
      scope: the scope that is missing (also in the error body, ``required_scope``).
    """

    default_detail = "This API key lacks the scope this operation needs."
    default_code = "missing_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This API key lacks the scope {scope!r} that this operation needs. Create a key "
            f"with it (`python manage.py createapikey <username> --organization <slug> "
            f"--scope {scope}`), or add it to the key in the admin."
        )
        self.scope = scope


#: A session's scopes: staff act for their organizations; only a superuser operates.
_STAFF_SCOPES = frozenset(ApiScope.values) - {ApiScope.OPS.value}
_SUPERUSER_SCOPES = frozenset(ApiScope.values)


def request_scopes(request: Request) -> frozenset[str]:
    """What the request may do: its API key's scopes, or a session user's."""
    if isinstance(request.auth, ApiKey):
        return frozenset(request.auth.scopes)
    user = request.user
    if getattr(user, "is_superuser", False):
        return _SUPERUSER_SCOPES
    if getattr(user, "is_staff", False):
        return _STAFF_SCOPES
    return frozenset()


def request_require_scope(request: Request, scope: str) -> None:
    """Raise :class:`MissingScope` unless the request holds ``scope``."""
    if scope not in request_scopes(request):
        raise MissingScope(scope)


def request_api_key_label(request: Request) -> str | None:
    """The public part of the request's API key (``tbx_<prefix>``), for audit trails."""
    if isinstance(request.auth, ApiKey):
        return f"tbx_{request.auth.prefix}"
    return None


def request_organization(request: Request) -> Organization:
    """The organization a request acts for, cached on the request.

    Every endpoint that acts for an organization passes through here (the
    ``HasOrganization`` permission), so a deactivated organization is refused
    here once, not view by view.

    Raises:
      NotAuthenticated: no API key and no session.
      PermissionDenied: a session user who is not staff, or not a member of the
        organization named by X-Organization.
      OrganizationInactive: the organization (the key's, or the one chosen) is
        deactivated.
      ValidationError: a staff user of several organizations named none.
    """
    cached: Organization | None = getattr(request, "_tbx_organization", None)
    if cached is not None:
        return cached
    organization = _resolve(request)
    if not organization.is_active:
        raise OrganizationInactive(
            f"Organization {organization.slug!r} is inactive: its API keys and sessions can "
            "neither read nor change its jobs. An administrator can reactivate it."
        )
    request._tbx_organization = organization  # type: ignore[attr-defined]
    return organization


def _resolve(request: Request) -> Organization:
    if isinstance(request.auth, ApiKey):
        return request.auth.membership.organization
    user: User | AnonymousUser = request.user
    if not user.is_authenticated:
        raise exceptions.NotAuthenticated(
            "Authentication required; send 'Authorization: Bearer <api key>'."
        )
    if not user.is_staff:
        raise exceptions.PermissionDenied(
            "Session access to the API is for staff users; use an API key instead."
        )
    candidates = organizations_for_user(user=user)
    slug = request.headers.get(ORGANIZATION_HEADER, "").strip()
    if slug:
        organization = candidates.filter(slug=slug).first()
        if organization is None:
            raise exceptions.PermissionDenied(
                f"You are not a member of an organization {slug!r}; "
                f"set {ORGANIZATION_HEADER} to one of your organizations' slugs."
            )
        return organization
    memberships = list(candidates[:2])
    if len(memberships) == 1:
        return memberships[0]
    if not memberships:
        raise exceptions.PermissionDenied("You belong to no organization yet.")
    raise exceptions.ValidationError(
        {
            ORGANIZATION_HEADER: [
                f"You belong to several organizations; choose one with the "
                f"{ORGANIZATION_HEADER}: <slug> header."
            ]
        }
    )
