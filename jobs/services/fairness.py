"""Fairness between organizations: who may submit now, and each organization's running cap.

- Submission: a per-organization rate limit (bursts up to the per-minute
  limit, then one submission per 60/limit seconds), a monthly quota, and
  refusal for inactive organizations. One Redis round trip per submission call
  (a batch counts as many submissions in that one call).
- Execution: a per-organization cap on running jobs and per-job-type start
  rate limits; over either, the worker defers the message (the ``Fairness``
  middleware), which is re-delivered later without using a retry.

The shared counters live in Redis (:mod:`jobs.transport.limits`); this
module decides and explains.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.utils import timezone

from jobs.conf import jobs_settings
from jobs.errors import BrokerUnavailable, OrganizationInactive, QuotaExceeded, RateLimited
from jobs.selectors.usage import jobs_created_since
from jobs.transport import limits
from jobs.transport.limits import Admission
from tenants.models import Organization


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _seconds_to_next_month(now: datetime) -> int:
    start = _month_start(now)
    days = calendar.monthrange(start.year, start.month)[1]
    return max(1, int((start.timestamp() + days * 86_400) - now.timestamp()))


def submission_admit(*, organization: Organization | None, count: int = 1) -> bool:
    """Admit ``count`` submissions of an organization, or raise why not.

    System submissions (no organization) are always admitted. Returns whether
    Redis was consulted (and so answered): the caller then needs no PING.

    Raises:
      OrganizationInactive: the organization is deactivated.
      RateLimited: over max_submissions_per_minute; ``retry_after_seconds`` says when.
      QuotaExceeded: the month's monthly_job_quota is used up.
      BrokerUnavailable: Redis did not answer; nothing was counted.
    """
    if organization is None or count <= 0:
        return False
    if not organization.is_active:
        raise OrganizationInactive(
            f"Organization {organization.slug!r} is inactive and cannot submit jobs; "
            "an administrator can reactivate it."
        )
    per_minute = max(1, organization.max_submissions_per_minute)
    if count > per_minute:
        raise RateLimited(
            f"A batch of {count} jobs exceeds {organization.slug!r}'s limit of "
            f"{per_minute} submissions per minute; split it into smaller batches.",
            retry_after_seconds=60,
        )
    quota = organization.monthly_job_quota
    now = timezone.now()
    month = _month_start(now).strftime("%Y-%m")
    try:
        answer = limits.submissions_admit(
            organization_id=organization.pk,
            month=month,
            per_minute=per_minute,
            count=count,
            quota=quota,
        )
        if answer.verdict is Admission.QUOTA_UNKNOWN:
            used = jobs_created_since(organization=organization, since=_month_start(now))
            limits.quota_counter_seed(organization_id=organization.pk, month=month, used=used)
            answer = limits.submissions_admit(
                organization_id=organization.pk,
                month=month,
                per_minute=per_minute,
                count=count,
                quota=quota,
            )
    except redis.RedisError as exc:
        raise BrokerUnavailable(
            f"Redis is unreachable ({type(exc).__name__}); nothing was created. "
            "Retry in a few seconds."
        ) from None
    if answer.verdict is Admission.OVER_QUOTA:
        raise QuotaExceeded(
            f"Organization {organization.slug!r} has used its monthly quota of {quota} jobs; "
            "it resets at the start of next month (UTC), or raise monthly_job_quota.",
            retry_after_seconds=_seconds_to_next_month(now),
        )
    if answer.verdict is Admission.RATE_LIMITED:
        wait = _seconds(answer.retry_after_ms)
        raise RateLimited(
            f"Organization {organization.slug!r} is submitting faster than its limit of "
            f"{per_minute} jobs per minute; retry after {wait} s.",
            retry_after_seconds=wait,
        )
    return True


@dataclass(frozen=True)
class OrganizationLimits:
    is_active: bool
    max_concurrent_jobs: int


_limits_cache: dict[int, tuple[float, OrganizationLimits | None]] = {}


def organization_limits(*, organization_id: int) -> OrganizationLimits | None:
    """An organization's active flag and concurrency cap, cached per process for a few seconds.

    The cache keeps the worker's hot path free of a database query per job.
    """
    now = time.monotonic()
    cached = _limits_cache.get(organization_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    row = (
        Organization.objects.filter(pk=organization_id)
        .values_list("is_active", "max_concurrent_jobs")
        .first()
    )
    found = OrganizationLimits(is_active=row[0], max_concurrent_jobs=row[1]) if row else None
    _limits_cache[organization_id] = (now + jobs_settings.fairness_cache_seconds, found)
    return found


def organization_limits_cached(*, organization_id: int) -> OrganizationLimits | None:
    """The cached limits of an active organization, or None (unknown, expired or inactive).

    For callers that must not query the database (a worker's consumer threads).
    """
    cached = _limits_cache.get(organization_id)
    if cached is None or cached[0] <= time.monotonic():
        return None
    found = cached[1]
    return found if found is not None and found.is_active else None


def organization_limits_forget() -> None:
    """Drop the per-process cache (tests, and after an administrator changes limits)."""
    _limits_cache.clear()
