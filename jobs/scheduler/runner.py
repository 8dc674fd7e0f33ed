"""The scheduler loop: leader election, one run per tick, missed-run policy, leader tasks.

Every scheduler process calls :meth:`Scheduler.step` in a loop. A standby
tries to take the leader lock; the leader renews it, submits the tick each
schedule is in (once: the run's idempotency key is ``periodic:<name>:<tick>``,
unique in the ledger, so a restart, a second scheduler or a split brain never
creates a second run), and runs the leader tasks that are due.

Missed runs: the tick considered is always the most recent one at or before
now. It runs if the ledger has no run for it and it is at most the grace
window late; older missed ticks are never run, so downtime never causes a
burst. A schedule that has never run starts with its first tick after this
scheduler started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import redis
from django.db import DatabaseError, close_old_connections
from django.db.models.functions import Collate

from jobs.conf import jobs_settings
from jobs.errors import JobsError
from jobs.models import Job
from jobs.outages import POSTGRES, REDIS
from jobs.registry import get_job_type
from jobs.scheduler.registry import LeaderTask, Schedule, all_leader_tasks, all_schedules
from jobs.services.submission import job_submit
from jobs.transport.broker import get_broker
from jobs.transport.leader_lock import LeaderLock, scheduler_identity

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def leader_lock_key() -> str:
    return f"{jobs_settings.redis_namespace}:scheduler:leader"


def leader_lock(*, identity: str | None = None, ttl_ms: int | None = None) -> LeaderLock:
    """The leader lock in the broker's Redis, with JOBS_SCHEDULER_LOCK_TTL_MS."""
    return LeaderLock(
        get_broker().client,
        leader_lock_key(),
        ttl_ms=ttl_ms or jobs_settings.scheduler_lock_ttl_ms,
        identity=identity or scheduler_identity(),
    )


class TickAction(StrEnum):
    SUBMITTED = "submitted"  # a run was created for this tick
    ALREADY_RAN = "already_ran"  # the ledger already has this tick's run (or a later one)
    TOO_LATE = "too_late"  # a missed tick older than the grace window: skipped
    BEFORE_START = "before_start"  # a never-run schedule's tick from before this scheduler started


@dataclass(frozen=True)
class TickOutcome:
    schedule: str
    tick: datetime
    action: TickAction
    job_id: str | None = None


@dataclass(frozen=True)
class LastRun:
    tick: datetime
    job_id: str
    status: str


def last_run(schedule: Schedule) -> LastRun | None:
    """The ledger's latest run of a schedule (its tick is in the idempotency key)."""
    # Compared byte by byte (collation "C"), like the ``jobs_system_key_c`` index: the
    # prefix is then a range of that index and the latest tick its last entry, however
    # many runs and system jobs the ledger holds. Ticks sort in time order in "C".
    row = (
        Job.objects.filter(organization__isnull=True, idempotency_key__isnull=False)
        .annotate(key_c=Collate("idempotency_key", "C"))
        .filter(key_c__startswith=schedule.key_prefix())
        .order_by("-key_c")
        .values_list("id", "idempotency_key", "status")
        .first()
    )
    if row is None or row[1] is None:
        return None
    tick = schedule.tick_of_key(row[1])
    if tick is None:
        return None
    return LastRun(tick=tick, job_id=str(row[0]), status=str(row[2]))


class Scheduler:
    """One scheduler process's state.

    Parameters:
      lock: the shared leader lock.
      schedules / leader_tasks: default to every declared one.
      clock: returns the current UTC time (tests pass a controlled clock).
      poll_ms: longest sleep between steps, in ms.
      grace_ms: default missed-run grace window, in ms (a schedule may override it).
    """

    def __init__(
        self,
        *,
        lock: LeaderLock,
        schedules: Sequence[Schedule] | None = None,
        leader_tasks: Sequence[LeaderTask] | None = None,
        clock: Clock = utc_now,
        poll_ms: int | None = None,
        grace_ms: int | None = None,
    ) -> None:
        self.lock = lock
        self.schedules = list(schedules if schedules is not None else all_schedules())
        self.leader_tasks = list(leader_tasks if leader_tasks is not None else all_leader_tasks())
        self.clock = clock
        self.poll_s = (poll_ms if poll_ms is not None else jobs_settings.scheduler_poll_ms) / 1000
        self.grace_ms = (
            grace_ms if grace_ms is not None else jobs_settings.scheduler_missed_run_grace_ms
        )
        self.started_at = clock()
        self.is_leader = False
        self._renewed_at = 0.0
        self._decided: dict[str, datetime] = {}
        self._task_due: dict[str, float] = {}
        for schedule in self.schedules:
            get_job_type(schedule.job_type)  # fail at start on a schedule of an unknown type

    # --- the loop ------------------------------------------------------------------

    def step(self, now: datetime | None = None) -> float:
        """One pass: keep or take the lock, run due ticks and tasks. Returns seconds to sleep."""
        close_old_connections()
        try:
            self._keep_or_take_lock()
        except redis.RedisError as exc:
            if self.is_leader:
                logger.warning("Lost contact with Redis (%s); stepping down as leader.", exc)
            self.is_leader = False
            return self.poll_s
        if not self.is_leader:
            return self.poll_s
        now = now or self.clock()
        self.run_due(now)
        self._run_leader_tasks()
        return self._sleep_seconds(now)

    def stop(self) -> None:
        """Give up the lock, so a standby takes over at once instead of after the TTL."""
        if self.is_leader:
            try:
                self.lock.release()
            except redis.RedisError as exc:
                logger.warning("Could not release the leader lock (%s); it expires by itself.", exc)
            logger.info("Scheduler %s released the leader lock.", self.lock.identity)
        self.is_leader = False

    def _keep_or_take_lock(self) -> None:
        renew_every = self.lock.ttl_ms / 3000
        if self.is_leader:
            if time.monotonic() - self._renewed_at < renew_every:
                return
            if self.lock.renew():
                self._renewed_at = time.monotonic()
                return
            self.is_leader = False
            logger.warning(
                "Scheduler %s lost the leader lock (it expired or was taken); standing by.",
                self.lock.identity,
            )
        if self.lock.acquire():
            self.is_leader = True
            self._renewed_at = time.monotonic()
            self._decided.clear()
            now = time.monotonic()
            self._task_due = {task.name: now for task in self.leader_tasks}
            logger.info(
                "Scheduler %s is now the leader (lock TTL %d ms).",
                self.lock.identity,
                self.lock.ttl_ms,
            )

    def _sleep_seconds(self, now: datetime) -> float:
        waits = [self.poll_s, self.lock.ttl_ms / 3000 - (time.monotonic() - self._renewed_at)]
        for schedule in self.schedules:
            waits.append((schedule.cron.next_after(now) - now).total_seconds())
        mono = time.monotonic()
        waits.extend(due - mono for due in self._task_due.values())
        return max(0.01, min(waits))

    # --- ticks -----------------------------------------------------------------------

    def run_due(self, now: datetime) -> list[TickOutcome]:
        """Decide, for each schedule, about the most recent tick at or before ``now``."""
        outcomes = []
        for schedule in self.schedules:
            tick = schedule.cron.latest_at_or_before(now)
            if self._decided.get(schedule.name) == tick:
                continue
            try:
                outcome = self._decide(schedule, tick, now)
            except (DatabaseError, JobsError):
                logger.exception(
                    "Could not run tick %s of schedule %s; trying again shortly.",
                    _fmt(tick),
                    schedule.name,
                )
                continue
            self._decided[schedule.name] = tick
            outcomes.append(outcome)
        return outcomes

    def _decide(self, schedule: Schedule, tick: datetime, now: datetime) -> TickOutcome:
        previous = last_run(schedule)
        if previous is not None and previous.tick >= tick:
            return TickOutcome(schedule.name, tick, TickAction.ALREADY_RAN, previous.job_id)
        if previous is None and tick < self.started_at:
            logger.info(
                "Schedule %s has never run; it starts at its next tick %s (UTC).",
                schedule.name,
                _fmt(schedule.cron.next_after(now)),
            )
            return TickOutcome(schedule.name, tick, TickAction.BEFORE_START)
        late = now - tick
        grace = timedelta(
            milliseconds=schedule.grace_ms if schedule.grace_ms is not None else self.grace_ms
        )
        if late > grace:
            logger.warning(
                "Missed tick %s of schedule %s is %d s late, beyond its grace window of %d s; "
                "not running it. The next run is at %s (UTC).",
                _fmt(tick),
                schedule.name,
                late.total_seconds(),
                grace.total_seconds(),
                _fmt(schedule.cron.next_after(now)),
            )
            return TickOutcome(schedule.name, tick, TickAction.TOO_LATE)
        if previous is not None and schedule.cron.next_after(previous.tick) < tick:
            logger.warning(
                "Schedule %s missed ticks after %s; running only the most recent, %s (%d s late).",
                schedule.name,
                _fmt(previous.tick),
                _fmt(tick),
                late.total_seconds(),
            )
        submission = job_submit(
            job_type=schedule.job_type,
            payload=schedule.payload_for(tick),
            priority=schedule.priority,
            idempotency_key=schedule.idempotency_key(tick),
        )
        job_id = str(submission.job.id)
        if not submission.created:
            return TickOutcome(schedule.name, tick, TickAction.ALREADY_RAN, job_id)
        logger.info(
            "Submitted %s for tick %s of schedule %s as job %s.",
            schedule.job_type,
            _fmt(tick),
            schedule.name,
            job_id,
        )
        return TickOutcome(schedule.name, tick, TickAction.SUBMITTED, job_id)

    # --- leader tasks ----------------------------------------------------------------

    def _run_leader_tasks(self) -> None:
        for task in self.leader_tasks:
            due = self._task_due.get(task.name, 0.0)
            if time.monotonic() < due:
                continue
            self._task_due[task.name] = time.monotonic() + task.interval_seconds
            try:
                task.fn()
            except (DatabaseError, redis.RedisError) as exc:
                # One line per outage (jobs.outages), not a traceback per try.
                (POSTGRES if isinstance(exc, DatabaseError) else REDIS).failed(exc)
                logger.debug("Leader task %s failed: %s", task.name, exc)
            except Exception:
                logger.exception(
                    "Leader task %s failed; it runs again in %.0f s.",
                    task.name,
                    task.interval_seconds,
                )
            else:
                POSTGRES.recovered()
                REDIS.recovered()
            finally:
                close_old_connections()
            # A slow task must not let the lock lapse.
            self._keep_or_take_lock()
            if not self.is_leader:
                return


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
