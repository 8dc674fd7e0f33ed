"""Periodic schedules and leader-only maintenance tasks.

Schedules are declared next to their job types (in an app's ``actors``
module) with :func:`periodic`, so they are discovered with the actors. Leader
tasks (the recovery loop, for instance) are plain callables that only the
scheduler holding the leader lock runs, each on its own interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobs.errors import InvalidSchedule
from jobs.queues import DEFAULT_PRIORITY
from jobs.scheduler.cron import CronExpression

#: Prefix of the idempotency key of every periodic run: ``periodic:<schedule>:<tick>``.
KEY_PREFIX = "periodic"
_TICK_FORMAT = "%Y-%m-%dT%H:%MZ"

PayloadFactory = Callable[[datetime], Mapping[str, Any]]


@dataclass(frozen=True)
class Schedule:
    """A job type submitted as a system job at every tick of a cron expression (UTC).

    Parameters:
      name: stable name, part of each run's idempotency key (``analytics.daily_report``).
      job_type: the registered job type to submit.
      cron: when it fires, in UTC.
      payload: the job's payload, or a function of the tick time that returns it.
      priority: 0-10, as for any submission.
      grace_ms: after downtime, the most recent missed tick still runs if it is at most
        this late, in ms; None means JOBS_SCHEDULER_MISSED_RUN_GRACE_MS.
    """

    name: str
    job_type: str
    cron: CronExpression
    payload: Mapping[str, Any] | PayloadFactory = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    grace_ms: int | None = None
    description: str = ""

    def payload_for(self, tick: datetime) -> dict[str, Any]:
        payload = self.payload(tick) if callable(self.payload) else self.payload
        return dict(payload)

    def key_prefix(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:"

    def idempotency_key(self, tick: datetime) -> str:
        """The ledger key of one run: a second submission of the same tick finds the first."""
        return f"{self.key_prefix()}{tick.astimezone(UTC).strftime(_TICK_FORMAT)}"

    def tick_of_key(self, key: str) -> datetime | None:
        """The tick time encoded in a run's idempotency key, or None if it is not one."""
        if not key.startswith(self.key_prefix()):
            return None
        try:
            return datetime.strptime(key[len(self.key_prefix()) :], _TICK_FORMAT).replace(
                tzinfo=UTC
            )
        except ValueError:
            return None


@dataclass(frozen=True)
class LeaderTask:
    """A maintenance callable that only the leader runs, every ``interval_seconds``."""

    name: str
    interval_seconds: float
    fn: Callable[[], Any]


_schedules: dict[str, Schedule] = {}
_leader_tasks: dict[str, LeaderTask] = {}


def periodic(
    name: str,
    *,
    job_type: str,
    cron: str,
    payload: Mapping[str, Any] | PayloadFactory | None = None,
    priority: int = DEFAULT_PRIORITY,
    grace_ms: int | None = None,
    description: str = "",
) -> Schedule:
    """Declare a schedule. Declaring the same name twice with other options is refused."""
    if ":" in name or not name:
        raise InvalidSchedule(f"Schedule name {name!r} must be non-empty and contain no ':'.")
    if grace_ms is not None and grace_ms < 0:
        raise InvalidSchedule(f"Schedule {name!r}: grace_ms must be 0 or more, not {grace_ms!r}.")
    schedule = Schedule(
        name=name,
        job_type=job_type,
        cron=CronExpression(cron),
        payload=payload if payload is not None else {},
        priority=priority,
        grace_ms=grace_ms,
        description=description,
    )
    existing = _schedules.get(name)
    if existing is not None and (existing.job_type, existing.cron) != (job_type, schedule.cron):
        raise InvalidSchedule(f"Schedule {name!r} is already declared as {existing!r}.")
    _schedules[name] = schedule
    return schedule


def all_schedules() -> list[Schedule]:
    return sorted(_schedules.values(), key=lambda s: s.name)


def get_schedule(name: str) -> Schedule:
    try:
        return _schedules[name]
    except KeyError:
        known = ", ".join(sorted(_schedules)) or "none"
        raise InvalidSchedule(f"Unknown schedule {name!r}. Known schedules: {known}.") from None


def register_leader_task(name: str, interval_seconds: float, fn: Callable[[], Any]) -> LeaderTask:
    """Run ``fn()`` every ``interval_seconds`` on the scheduler that holds the leader lock.

    Tasks run in the scheduler's loop, one after another, between lock
    renewals: keep each run well under a third of JOBS_SCHEDULER_LOCK_TTL_MS.
    An exception is logged and the task runs again at its next interval.
    """
    if interval_seconds <= 0:
        raise InvalidSchedule(
            f"Leader task {name!r}: interval_seconds must be positive, not {interval_seconds!r}."
        )
    task = LeaderTask(name=name, interval_seconds=float(interval_seconds), fn=fn)
    _leader_tasks[name] = task
    return task


def unregister_leader_task(name: str) -> None:
    _leader_tasks.pop(name, None)


def all_leader_tasks() -> list[LeaderTask]:
    return sorted(_leader_tasks.values(), key=lambda t: t.name)
