"""Fairness between organizations: who may submit now, and each organization's running cap.

- Submission: a per-organization rate limit (bursts up to the per-minute
  limit, then one submission per 60/limit seconds), a monthly quota, and
  refusal for inactive organizations. One Redis round trip per submission call
  (a batch counts as many submissions in that one call), which a submission
  overlaps with its INSERT (:func:`submission_admit_start`).
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
from jobs.transport.pending import PendingReply, send_ping
from tenants.models import Organization


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _seconds_to_next_month(now: datetime) -> int:
    start = _month_start(now)
    days = calendar.monthrange(start.year, start.month)[1]
    return max(1, int((start.timestamp() + days * 86_400) - now.timestamp()))


def submission_admit(*, organization: Organization | None, count: int = 1) -> None:
    """Admit ``count`` submissions of an organization, or raise why not.

    System submissions (no organization) are always admitted, without a
    round trip. Otherwise the same as :func:`submission_admit_start` followed
    at once by :meth:`AdmissionTicket.finish`.

    Raises:
      OrganizationInactive: the organization is deactivated.
      RateLimited: over max_submissions_per_minute; ``retry_after_seconds`` says when.
      QuotaExceeded: the month's monthly_job_quota is used up.
      BrokerUnavailable: Redis did not answer; nothing was counted.
    """
    if organization is None or count <= 0:
        return
    submission_admit_start(organization=organization, count=count).finish()


def submission_admit_start(*, organization: Organization | None, count: int = 1) -> AdmissionTicket:
    """Start admitting ``count`` submissions: refuse now what needs no round trip, and
    send the Redis call (the rate and quota script, or a PING for system submissions)
    without waiting for its answer; :meth:`AdmissionTicket.finish` reads it.

    A submission writes its rows in between, so the two round trips overlap
    (docs/performance.md). Raises as :func:`submission_admit`; ``BrokerUnavailable``
    here if the call cannot even be sent.
    """
    now = timezone.now()
    try:
        if organization is None or count <= 0:
            return AdmissionTicket(organization=None, count=count, now=now, ping=send_ping())
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
        month = _month_start(now).strftime("%Y-%m")
        call = limits.submissions_admit_send(
            organization_id=organization.pk,
            month=month,
            per_minute=per_minute,
            count=count,
            quota=organization.monthly_job_quota,
        )
    except redis.RedisError as exc:
        raise _unavailable(exc) from None
    return AdmissionTicket(organization=organization, count=count, now=now, call=call)


def _unavailable(exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"Redis is unreachable ({type(exc).__name__}); nothing was created. Retry in a few seconds."
    )


@dataclass
class AdmissionTicket:
    """An admission sent to Redis whose answer is not read yet (:func:`submission_admit_start`)."""

    organization: Organization | None
    count: int
    now: datetime
    call: limits.PendingAdmission | None = None
    ping: PendingReply | None = None

    def finish(self, *, own_rows: int = 0) -> None:
        """Read the answer: return if admitted, else raise as :func:`submission_admit`.

        ``own_rows``: rows of this submission already written in the ledger;
        a quota counter seeded from the ledger now must not count them, since
        the script adds them once admitted.
        """
        try:
            if self.ping is not None:
                self.ping.read()
                return
            assert self.call is not None
            answer = self.call.verdict()
            if answer.verdict is Admission.QUOTA_UNKNOWN:
                answer = self._seed_and_ask(own_rows)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        self._raise_if_refused(answer)

    def drop(self) -> None:
        """Forget the answer (the submission failed before it was needed)."""
        for pending in (self.call, self.ping):
            if pending is not None:
                pending.drop()

    def _seed_and_ask(self, own_rows: int) -> limits.AdmissionVerdict:
        organization = self.organization
        assert organization is not None
        since = _month_start(self.now)
        month = since.strftime("%Y-%m")
        used = jobs_created_since(organization=organization, since=since)
        limits.quota_counter_seed(
            organization_id=organization.pk, month=month, used=max(0, used - own_rows)
        )
        return limits.submissions_admit(
            organization_id=organization.pk,
            month=month,
            per_minute=max(1, organization.max_submissions_per_minute),
            count=self.count,
            quota=organization.monthly_job_quota,
        )

    def _raise_if_refused(self, answer: limits.AdmissionVerdict) -> None:
        organization = self.organization
        assert organization is not None
        if answer.verdict is Admission.OVER_QUOTA:
            raise QuotaExceeded(
                f"Organization {organization.slug!r} has used its monthly quota of "
                f"{organization.monthly_job_quota} jobs; it resets at the start of next month "
                "(UTC), or raise monthly_job_quota.",
                retry_after_seconds=_seconds_to_next_month(self.now),
            )
        if answer.verdict is Admission.RATE_LIMITED:
            wait = _seconds(answer.retry_after_ms)
            per_minute = max(1, organization.max_submissions_per_minute)
            raise RateLimited(
                f"Organization {organization.slug!r} is submitting faster than its limit of "
                f"{per_minute} jobs per minute; retry after {wait} s.",
                retry_after_seconds=wait,
            )


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
