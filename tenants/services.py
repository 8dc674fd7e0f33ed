"""Writes for organizations, memberships and API keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from tenants import key_cache
from tenants.conf import tenants_settings
from tenants.errors import (
    ApiKeyNotFound,
    InvalidScope,
    InvalidSlug,
    NotAMember,
    OrganizationExists,
    OrganizationNotFound,
    UserNotFound,
)
from tenants.models import (
    DEFAULT_SCOPES,
    ApiKey,
    ApiScope,
    Membership,
    Organization,
    OrganizationUsage,
    Role,
    UsageFlag,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "tbx"
#: last_used_at is written at most this often per key, to keep reads cheap.
LAST_USED_RESOLUTION = timedelta(seconds=30)


@dataclass(frozen=True)
class IssuedKey:
    """A new API key. ``raw`` is the only copy of the key: show it once."""

    api_key: ApiKey
    raw: str


def organization_create(
    *,
    slug: str,
    name: str = "",
    owner_username: str | None = None,
    owner_email: str = "",
) -> Organization:
    """Create an organization, and its owner user (created if missing) as an owner member."""
    if slugify(slug) != slug or not slug:
        raise InvalidSlug(
            f"{slug!r} is not a valid slug; use lowercase letters, digits and hyphens "
            f"(for example {slugify(slug) or 'my-school'!r})."
        )
    with transaction.atomic():
        if Organization.objects.filter(slug=slug).exists():
            raise OrganizationExists(
                f"An organization with slug {slug!r} already exists; choose another slug."
            )
        org = Organization.objects.create(slug=slug, name=name or slug.replace("-", " ").title())
        if owner_username:
            user_model = get_user_model()
            user, _ = user_model.objects.get_or_create(
                username=owner_username, defaults={"email": owner_email}
            )
            Membership.objects.create(user=user, organization=org, role=Role.OWNER)
    return org


def organization_get(*, slug: str) -> Organization:
    try:
        return Organization.objects.get(slug=slug)
    except Organization.DoesNotExist:
        known = ", ".join(Organization.objects.values_list("slug", flat=True)[:20]) or "none yet"
        raise OrganizationNotFound(
            f"No organization with slug {slug!r}. Known: {known}. "
            "Create one with `python manage.py createorganization <slug>`."
        ) from None


def membership_get(*, username: str, organization: Organization) -> Membership:
    user_model = get_user_model()
    try:
        user = user_model.objects.get(username=username)
    except user_model.DoesNotExist:
        raise UserNotFound(
            f"No user {username!r}. Create one with "
            f"`python manage.py createorganization {organization.slug} --owner {username}` "
            "or `python manage.py createsuperuser`."
        ) from None
    membership = Membership.objects.filter(user=user, organization=organization).first()
    if membership is None:
        raise NotAMember(
            f"User {username!r} is not a member of {organization.slug!r}; add a membership "
            "in the admin first."
        )
    return membership


def membership_ensure(*, user: User, organization: Organization, role: Role) -> Membership:
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    return membership


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_scopes_clean(scopes: Iterable[str]) -> list[str]:
    """``scopes`` as stored: known scopes only, each once, in the order of :class:`ApiScope`.

    Raises:
      InvalidScope: a name that is not a scope.
    """
    wanted = {str(scope).strip() for scope in scopes}
    unknown = sorted(wanted - set(ApiScope.values))
    if unknown:
        raise InvalidScope(
            f"Unknown API key scope(s) {', '.join(repr(s) for s in unknown)}; "
            f"choose among {', '.join(ApiScope.values)}."
        )
    return [scope for scope in ApiScope.values if scope in wanted]


def api_key_create(
    *, membership: Membership, name: str = "default", scopes: Iterable[str] | None = None
) -> IssuedKey:
    """Issue a key ``tbx_<prefix>_<secret>``; only its SHA-256 is stored.

    ``scopes`` defaults to :data:`~tenants.models.DEFAULT_SCOPES` (read, submit, cancel, retry).
    """
    clean = api_key_scopes_clean(DEFAULT_SCOPES if scopes is None else scopes)
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        membership=membership,
        name=name[:100] or "default",
        prefix=prefix,
        key_hash=_hash(raw),
        scopes=clean,
    )
    return IssuedKey(api_key=api_key, raw=raw)


def api_key_set_scopes(*, api_key: ApiKey, scopes: Iterable[str]) -> ApiKey:
    """Change what a key may do; every web process sees the change once it commits."""
    api_key.scopes = api_key_scopes_clean(scopes)
    api_key.save(update_fields=["scopes"])
    api_key_cache_invalidate()
    return api_key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None. Updates last-used at most every 30 s.

    A key found valid is trusted for ``API_KEY_CACHE_SECONDS`` by this process
    (with its membership, organization and user, as read then), which saves a
    query with three joins on every API request. Every change that matters
    (:func:`api_key_revoke`, :func:`api_key_cache_invalidate`) makes every
    process forget its keys at once (``tenants.key_cache``). Unknown and
    revoked keys are never cached.
    """
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX:
        return None
    digest = _hash(raw)
    api_key = key_cache.get(digest)
    if api_key is None:
        since = key_cache.generation()
        api_key = (
            ApiKey.objects.select_related("membership__organization", "membership__user")
            .filter(prefix=parts[1])
            .first()
        )
        if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
            return None
        if api_key.revoked_at is not None:
            return None
        if api_key.membership.user.is_active:  # an inactive user's key is read every time
            key_cache.put(
                digest,
                api_key,
                ttl_seconds=tenants_settings.api_key_cache_seconds,
                since_generation=since,
            )
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def api_key_get(*, prefix: str) -> ApiKey:
    """The key whose public prefix is ``prefix`` (``tbx_<prefix>`` and a whole key work too)."""
    parts = prefix.strip().split("_")
    wanted = parts[1] if len(parts) >= 2 and parts[0] == KEY_PREFIX else parts[0]
    api_key = (
        ApiKey.objects.select_related("membership__organization").filter(prefix=wanted).first()
    )
    if api_key is None:
        raise ApiKeyNotFound(
            f"No API key with prefix {wanted!r}; the admin's API keys page lists every prefix."
        )
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; once the transaction commits, no process accepts it any more."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key_cache_invalidate()
    api_key.refresh_from_db()
    return api_key


def api_key_cache_invalidate() -> None:
    """Make every process forget the keys it trusts, once the current transaction commits.

    Call it after any write that changes what a key authenticates as: an
    organization's active flag or limits, a membership, a key.
    """
    key_cache.invalidate_everywhere()


def api_key_cache_forget() -> None:
    """Drop every key this process trusts (tests)."""
    key_cache.forget()


#: Share of the monthly quota at which an organization is flagged, in percent.
USAGE_WARNING_PERCENT = 80


def usage_flag(*, jobs_submitted: int, quota: int | None) -> UsageFlag:
    """The flag of a month's usage: none, 80 (>= 80 % of quota) or 100 (quota reached)."""
    if not quota:
        return UsageFlag.NONE
    if jobs_submitted >= quota:
        return UsageFlag.EXCEEDED
    if jobs_submitted * 100 >= quota * USAGE_WARNING_PERCENT:
        return UsageFlag.WARNING
    return UsageFlag.NONE


def organization_usage_record(
    *, month: date, jobs_submitted: Mapping[int, int]
) -> list[OrganizationUsage]:
    """Record every organization's usage for ``month`` and flag 80 % and 100 % of quota.

    ``jobs_submitted`` maps organization id to the jobs it submitted that month
    (organizations absent from it submitted none). Returns the rows written.
    """
    month = month.replace(day=1)
    now = timezone.now()
    rows = []
    for org in Organization.objects.order_by("pk"):
        with transaction.atomic():
            usage, _ = OrganizationUsage.objects.select_for_update().get_or_create(
                organization=org, month=month
            )
            # Never lower a month's count: retention may already have deleted old jobs.
            count = max(usage.jobs_submitted, int(jobs_submitted.get(org.pk, 0)))
            flag = usage_flag(jobs_submitted=count, quota=org.monthly_job_quota)
            if flag != usage.flag and flag != UsageFlag.NONE:
                usage.flagged_at = now
                logger.warning(
                    "Organization %s used %d of its %s monthly jobs in %s (flag %s).",
                    org.slug,
                    count,
                    org.monthly_job_quota,
                    f"{month:%Y-%m}",
                    flag,
                )
            elif flag == UsageFlag.NONE:
                usage.flagged_at = None
            usage.jobs_submitted = count
            usage.quota = org.monthly_job_quota
            usage.flag = flag
            usage.save()
        rows.append(usage)
    return rows
