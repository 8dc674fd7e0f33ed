"""Fairness between organizations, with shared state in Redis so every worker agrees.

- Submission: a per-organization rate limit (GCRA: bursts up to the per-minute
  limit, then one submission per 60/limit seconds), a monthly quota, and
  refusal for inactive organizations. One Redis round trip per submission call
  (a batch counts as many submissions in that one call).
- Execution: a per-organization cap on running jobs (a lease-based semaphore)
  and per-job-type start rate limits. Over either, the worker defers the
  message: it is re-delivered later without using a retry.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.db.models import Q
from django.utils import timezone

from jobs.broker import get_broker
from jobs.conf import jobs_settings
from jobs.errors import BrokerUnavailable, OrganizationInactive, QuotaExceeded, RateLimited
from jobs.models import Job
from tenants.models import Organization

# Returns {1, 0} admitted, {0, retry_after_ms} rate-limited, {-1, 0} over quota,
# {-2, 0} quota counter missing (the caller seeds it from the ledger and retries).
_ADMIT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local quota = tonumber(ARGV[5])
if quota >= 0 then
  local used = redis.call('GET', KEYS[2])
  if not used then return {-2, 0} end
  if tonumber(used) + cost > quota then return {-1, 0} end
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - burst
if allow_at > now then return {0, math.ceil(allow_at - now)} end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
if quota >= 0 then redis.call('INCRBY', KEYS[2], cost) end
return {1, 0}
"""

# A start-rate limit for one key (a job type): {1, 0} or {0, retry_after_ms}.
_TAKE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - burst > now then return {0, math.ceil(new_tat - burst - now)} end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
"""

# Semaphore of running jobs: members are job ids scored by lease expiry (ms).
# Expired leases (a worker that died mid-job) free their slot by themselves.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) + 60000)
return 1
"""


_scripts: dict[tuple[int, str], Any] = {}


def registered_script(source: str) -> Any:
    """The registered Script of ``source`` on the broker's client (hashed once per client)."""
    client = get_broker().client
    cache_key = (id(client), source)
    script = _scripts.get(cache_key)
    if script is None:
        script = _scripts[cache_key] = client.register_script(source)
    return script


def _key(*parts: object) -> str:
    return ":".join([get_broker().namespace, "fairness", *map(str, parts)])


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    interval = 60_000 / per_minute
    quota = organization.monthly_job_quota
    now = timezone.now()
    month = _month_start(now).strftime("%Y-%m")
    keys = [_key("rate", organization.pk), _key("quota", organization.pk, month)]
    client = get_broker().client
    script = registered_script(_ADMIT)
    args = [_now_ms(), interval, 60_000, count, -1 if quota is None else quota]
    try:
        verdict, retry_ms = script(keys=keys, args=args)
        if verdict == -2:
            used = Job.objects.filter(
                Q(organization=organization) & Q(created_at__gte=_month_start(now))
            ).count()
            client.set(keys[1], used, nx=True, ex=40 * 86_400)
            verdict, retry_ms = script(keys=keys, args=[_now_ms(), *args[1:]])
    except redis.RedisError as exc:
        raise BrokerUnavailable(
            f"Redis is unreachable ({type(exc).__name__}); nothing was created. "
            "Retry in a few seconds."
        ) from None
    if verdict == -1:
        raise QuotaExceeded(
            f"Organization {organization.slug!r} has used its monthly quota of {quota} jobs; "
            "it resets at the start of next month (UTC), or raise monthly_job_quota.",
            retry_after_seconds=_seconds_to_next_month(now),
        )
    if verdict == 0:
        raise RateLimited(
            f"Organization {organization.slug!r} is submitting faster than its limit of "
            f"{per_minute} jobs per minute; retry after {_seconds(int(retry_ms))} s.",
            retry_after_seconds=_seconds(int(retry_ms)),
        )
    return True


def type_rate_take(*, job_type: str, per_minute: int) -> int:
    """Take a start token of a job type; returns 0, or the ms to wait before trying again."""
    script = registered_script(_TAKE)
    interval = 60_000 / max(1, per_minute)
    # Burst of one second's worth, at least one: starts spread over the minute.
    burst = max(interval, 1_000)
    verdict, retry_ms = script(keys=[_key("type", job_type)], args=[_now_ms(), interval, burst])
    return 0 if verdict == 1 else max(1, int(retry_ms))


def concurrency_acquire(*, organization_id: int, job_id: str, limit: int, lease_ms: int) -> bool:
    """Take one of the organization's running-job slots for this job, if one is free."""
    script = registered_script(_ACQUIRE)
    return bool(
        script(
            keys=[_key("running", organization_id)],
            args=[_now_ms(), job_id, max(1, limit), lease_ms],
        )
    )


def concurrency_acquire_many(slots: Sequence[tuple[int, str, int, int]]) -> list[bool]:
    """Take many ``(organization_id, job_id, limit, lease_ms)`` slots in one round trip.

    Each is decided as :func:`concurrency_acquire` would, in order.
    """
    if not slots:
        return []
    script = registered_script(_ACQUIRE)
    client = get_broker().client
    now = _now_ms()
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            for organization_id, job_id, limit, lease_ms in slots:
                # EVALSHA directly: a pipeline of Script calls first asks SCRIPT EXISTS.
                pipe.evalsha(
                    script.sha,
                    1,
                    _key("running", organization_id),
                    now,
                    job_id,
                    max(1, limit),
                    lease_ms,
                )
            replies = pipe.execute(raise_on_error=False)
        if attempt == 0 and any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            script.sha = client.script_load(_ACQUIRE)  # Redis lost its scripts: none ran
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [bool(r) for r in replies]
    raise AssertionError("unreachable")  # pragma: no cover


def concurrency_release(*, organization_id: int, job_id: str) -> None:
    get_broker().client.zrem(_key("running", organization_id), job_id)


def concurrency_release_many(slots: Sequence[tuple[int, str]]) -> None:
    """Free many ``(organization_id, job_id)`` slots in one round trip."""
    if not slots:
        return
    pipe = get_broker().client.pipeline(transaction=False)
    for organization_id, job_id in slots:
        pipe.zrem(_key("running", organization_id), job_id)
    pipe.execute()


def concurrency_running(*, organization_id: int) -> int:
    """How many slots an organization holds now (expired leases excluded)."""
    return int(get_broker().client.zcount(_key("running", organization_id), _now_ms(), "+inf"))


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
    limits = OrganizationLimits(is_active=row[0], max_concurrent_jobs=row[1]) if row else None
    _limits_cache[organization_id] = (now + jobs_settings.fairness_cache_seconds, limits)
    return limits


def organization_limits_cached(*, organization_id: int) -> OrganizationLimits | None:
    """The cached limits of an active organization, or None (unknown, expired or inactive).

    For callers that must not query the database (a worker's consumer threads).
    """
    cached = _limits_cache.get(organization_id)
    if cached is None or cached[0] <= time.monotonic():
        return None
    limits = cached[1]
    return limits if limits is not None and limits.is_active else None


def organization_limits_forget() -> None:
    """Drop the per-process cache (tests, and after an administrator changes limits)."""
    _limits_cache.clear()
