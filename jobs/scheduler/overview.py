"""What the admin dashboard and ``periodiq --list`` show: schedules, last and next runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobs.registry import get_job_type
from jobs.scheduler.registry import all_schedules
from jobs.scheduler.runner import last_run, leader_lock, utc_now
from jobs.transport.leader_lock import LockHolder


@dataclass(frozen=True)
class ScheduleOverview:
    """One schedule as operators see it. Times are UTC.

    Parameters:
      last_tick / last_job_id / last_status: the ledger's latest run, or None if it never ran.
    """

    name: str
    job_type: str
    queue: str
    cron: str
    description: str
    next_run: datetime
    last_tick: datetime | None
    last_job_id: str | None
    last_status: str | None


def schedules_overview(*, now: datetime | None = None) -> list[ScheduleOverview]:
    """Every declared schedule with its next run and its last run from the ledger."""
    now = now or utc_now()
    rows = []
    for schedule in all_schedules():
        previous = last_run(schedule)
        rows.append(
            ScheduleOverview(
                name=schedule.name,
                job_type=schedule.job_type,
                queue=get_job_type(schedule.job_type).queue,
                cron=str(schedule.cron),
                description=schedule.description,
                next_run=schedule.cron.next_after(now),
                last_tick=previous.tick if previous else None,
                last_job_id=previous.job_id if previous else None,
                last_status=previous.status if previous else None,
            )
        )
    return rows


def scheduler_leader() -> LockHolder | None:
    """The scheduler holding the leader lock now (None: no scheduler is running)."""
    return leader_lock(identity="overview").holder()
