"""Shared counters of fairness in Redis: submission rate and quota, start rates, running slots.

Every web process and worker agrees on them because they live in Redis,
under ``<namespace>:fairness:...``. The policy (who is limited, by how much,
and what a refusal says) is :mod:`jobs.services.fairness`; this module only
runs the scripts.

- Submission admission (GCRA rate limit with bursts up to the per-minute
  limit, plus a monthly quota counter): one script call per submission call.
- Start rate of a job type: GCRA with a one-second burst.
- Running slots of an organization: a lease-based semaphore (a sorted set of
  job ids scored by lease expiry), so a slot held by a dead worker frees itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis

from jobs.transport.broker import get_broker
from jobs.transport.pending import PendingReply, send_evalsha

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

#: Expiry of a seeded monthly quota counter: a month and some slack, in seconds.
QUOTA_COUNTER_TTL_SECONDS = 40 * 86_400
#: A submission's burst: the whole per-minute allowance, in milliseconds of GCRA credit.
SUBMISSION_BURST_MS = 60_000


class Admission(IntEnum):
    """The verdict of :func:`submissions_admit`."""

    ADMITTED = 1
    RATE_LIMITED = 0
    OVER_QUOTA = -1
    QUOTA_UNKNOWN = -2  # the month's counter is missing: seed it, then ask again


@dataclass(frozen=True)
class AdmissionVerdict:
    verdict: Admission
    retry_after_ms: int = 0


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


def _admit_call(
    *, organization_id: int, month: str, per_minute: int, count: int, quota: int | None
) -> tuple[list[str], list[Any]]:
    keys = [_key("rate", organization_id), _key("quota", organization_id, month)]
    args = [
        _now_ms(),
        60_000 / per_minute,
        SUBMISSION_BURST_MS,
        count,
        -1 if quota is None else quota,
    ]
    return keys, args


def submissions_admit(
    *, organization_id: int, month: str, per_minute: int, count: int, quota: int | None
) -> AdmissionVerdict:
    """Take ``count`` submissions of an organization's rate and quota, or say why not.

    ``month`` (``YYYY-MM``) names the quota counter. Raises ``redis.RedisError``.
    """
    keys, args = _admit_call(
        organization_id=organization_id,
        month=month,
        per_minute=per_minute,
        count=count,
        quota=quota,
    )
    verdict, retry_ms = registered_script(_ADMIT)(keys=keys, args=args)
    return AdmissionVerdict(Admission(int(verdict)), int(retry_ms))


class PendingAdmission:
    """:func:`submissions_admit` sent to Redis, its verdict read later (:meth:`verdict`)."""

    def __init__(self, **call: Any) -> None:
        self._call = call
        keys, args = _admit_call(**call)
        self._reply: PendingReply = send_evalsha(registered_script(_ADMIT).sha, keys, args)

    def verdict(self) -> AdmissionVerdict:
        """The verdict; raises ``redis.RedisError``."""
        try:
            verdict, retry_ms = self._reply.read()
        except redis.exceptions.NoScriptError:
            # Redis lost its scripts (a restart): nothing ran. The ordinary call loads it.
            return submissions_admit(**self._call)
        return AdmissionVerdict(Admission(int(verdict)), int(retry_ms))

    def drop(self) -> None:
        """Forget the verdict (the submission failed before it was needed)."""
        self._reply.drop()


def submissions_admit_send(
    *, organization_id: int, month: str, per_minute: int, count: int, quota: int | None
) -> PendingAdmission:
    """:func:`submissions_admit` without waiting: read the verdict with ``.verdict()``.

    Raises ``redis.RedisError`` if the call cannot be sent.
    """
    return PendingAdmission(
        organization_id=organization_id,
        month=month,
        per_minute=per_minute,
        count=count,
        quota=quota,
    )


def quota_counter_seed(*, organization_id: int, month: str, used: int) -> None:
    """Start a month's quota counter at ``used`` unless another process did first."""
    get_broker().client.set(
        _key("quota", organization_id, month), used, nx=True, ex=QUOTA_COUNTER_TTL_SECONDS
    )


def type_rate_take(*, job_type: str, per_minute: int) -> int:
    """Take a start token of a job type; returns 0, or the ms to wait before trying again."""
    interval = 60_000 / max(1, per_minute)
    # Burst of one second's worth, at least one: starts spread over the minute.
    burst = max(interval, 1_000)
    verdict, retry_ms = registered_script(_TAKE)(
        keys=[_key("type", job_type)], args=[_now_ms(), interval, burst]
    )
    return 0 if verdict == 1 else max(1, int(retry_ms))


def concurrency_acquire(*, organization_id: int, job_id: str, limit: int, lease_ms: int) -> bool:
    """Take one of the organization's running-job slots for this job, if one is free."""
    return bool(
        registered_script(_ACQUIRE)(
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


def concurrency_holders(organization_ids: Sequence[int]) -> dict[int, list[str]]:
    """The job ids holding each organization's running-job slots (expired leases included)."""
    if not organization_ids:
        return {}
    pipe = get_broker().client.pipeline(transaction=False)
    for organization_id in organization_ids:
        pipe.zrange(_key("running", organization_id), 0, -1)
    replies = pipe.execute()
    return {
        organization_id: [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        for organization_id, members in zip(organization_ids, replies, strict=True)
    }
