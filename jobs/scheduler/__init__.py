"""The periodic scheduler behind ``manage.py periodiq``.

- :func:`periodic` declares a schedule (cron in UTC) for a job type;
- :func:`register_leader_task` adds a maintenance callable run only by the leader;
- :func:`schedules_overview` lists schedules with their last and next runs.
"""

from __future__ import annotations

from jobs.scheduler.cron import CronExpression
from jobs.scheduler.overview import ScheduleOverview, scheduler_leader, schedules_overview
from jobs.scheduler.registry import (
    LeaderTask,
    Schedule,
    all_leader_tasks,
    all_schedules,
    get_schedule,
    periodic,
    register_leader_task,
    unregister_leader_task,
)
from jobs.scheduler.runner import Scheduler, TickAction, TickOutcome, last_run, leader_lock

__all__ = [
    "CronExpression",
    "LeaderTask",
    "Schedule",
    "ScheduleOverview",
    "Scheduler",
    "TickAction",
    "TickOutcome",
    "all_leader_tasks",
    "all_schedules",
    "get_schedule",
    "last_run",
    "leader_lock",
    "periodic",
    "register_leader_task",
    "scheduler_leader",
    "schedules_overview",
    "unregister_leader_task",
]
