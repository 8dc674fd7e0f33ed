"""The scheduler with a controlled clock, real Redis (leader lock) and the real ledger."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import Job
from jobs.scheduler import (
    CronExpression,
    LeaderTask,
    Schedule,
    Scheduler,
    TickAction,
    get_schedule,
    last_run,
    leader_lock,
    schedules_overview,
)
from jobs.transport.leader_lock import LeaderLock
from tenants.models import Organization

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def every_minute(name: str = "test.every_minute", **options: Any) -> Schedule:
    return Schedule(
        name=name,
        job_type="tests.count",
        cron=CronExpression(options.pop("cron", "* * * * *")),
        payload={"key": name},
        **options,
    )


@pytest.fixture
def make_scheduler(broker: Any) -> Iterator[Any]:
    made: list[Scheduler] = []

    def _make(
        clock: Clock,
        schedules: list[Schedule],
        *,
        ttl_ms: int = 5_000,
        lock_key: str | None = None,
        leader_tasks: list[LeaderTask] | None = None,
        grace_ms: int = 3_600_000,
    ) -> Scheduler:
        lock = leader_lock(ttl_ms=ttl_ms)
        if lock_key is not None:
            lock = LeaderLock(lock.client, lock_key, ttl_ms=ttl_ms, identity=lock.identity)
        scheduler = Scheduler(
            lock=lock,
            schedules=schedules,
            leader_tasks=leader_tasks or [],
            clock=clock,
            grace_ms=grace_ms,
        )
        made.append(scheduler)
        return scheduler

    yield _make
    for scheduler in made:
        scheduler.stop()


def runs(schedule: Schedule) -> list[str]:
    keys = Job.objects.filter(idempotency_key__startswith=schedule.key_prefix()).values_list(
        "idempotency_key", flat=True
    )
    return sorted(key for key in keys if key is not None)


def test_two_schedulers_stepping_for_three_minutes_make_exactly_three_runs(
    make_scheduler: Any,
) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 20, tzinfo=UTC))
    first, second = make_scheduler(clock, [schedule]), make_scheduler(clock, [schedule])

    for _ in range(18):  # 3 minutes in 10-second steps
        clock.advance(seconds=10)
        first.step()
        second.step()

    assert [first.is_leader, second.is_leader] == [True, False]
    assert runs(schedule) == [
        "periodic:test.every_minute:2026-05-04T10:01Z",
        "periodic:test.every_minute:2026-05-04T10:02Z",
        "periodic:test.every_minute:2026-05-04T10:03Z",
    ]
    job = Job.objects.get(idempotency_key="periodic:test.every_minute:2026-05-04T10:01Z")
    assert job.organization_id is None, "periodic runs are system jobs"
    assert job.payload == {"key": "test.every_minute"}


def test_two_leaders_at_once_still_make_one_run_per_tick(make_scheduler: Any) -> None:
    # A split brain (each holds a lock of its own) is caught by the ledger's unique key.
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 50, tzinfo=UTC))
    first = make_scheduler(clock, [schedule], lock_key="test:lock:a")
    second = make_scheduler(clock, [schedule], lock_key="test:lock:b")
    clock.advance(seconds=11)

    outcomes = first.run_due(clock()) + second.run_due(clock())
    first.step()
    second.step()

    assert [o.action for o in outcomes] == [TickAction.SUBMITTED, TickAction.ALREADY_RAN]
    assert outcomes[0].job_id == outcomes[1].job_id
    assert len(runs(schedule)) == 1


def test_a_restart_inside_the_same_minute_does_not_run_the_tick_again(
    make_scheduler: Any,
) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 50, tzinfo=UTC))
    before = make_scheduler(clock, [schedule])
    clock.advance(seconds=11)
    before.step()
    before.stop()

    clock.advance(seconds=30)
    after = make_scheduler(clock, [schedule])
    after.step()

    assert after.is_leader
    assert runs(schedule) == ["periodic:test.every_minute:2026-05-04T10:01Z"]


def test_after_downtime_only_the_most_recent_missed_tick_runs_and_only_once(
    make_scheduler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 50, tzinfo=UTC))
    before = make_scheduler(clock, [schedule])
    clock.advance(seconds=11)
    before.step()
    before.stop()

    clock.advance(minutes=10, seconds=29)  # down from 10:01:01 to 10:11:30
    after = make_scheduler(clock, [schedule])
    for _ in range(5):
        after.step()
        clock.advance(seconds=5)

    assert runs(schedule) == [
        "periodic:test.every_minute:2026-05-04T10:01Z",
        "periodic:test.every_minute:2026-05-04T10:11Z",
    ]
    assert "missed ticks after 2026-05-04 10:01" in caplog.text


def test_a_missed_tick_older_than_the_grace_window_is_skipped_until_the_next_tick(
    make_scheduler: Any,
) -> None:
    schedule = every_minute("test.hourly", cron="0 * * * *", grace_ms=60_000)
    clock = Clock(datetime(2026, 5, 4, 9, 59, 0, tzinfo=UTC))
    before = make_scheduler(clock, [schedule])
    clock.advance(minutes=1, seconds=1)
    before.step()
    before.stop()

    clock.advance(hours=1, minutes=5)  # 11:05:01: the 11:00 tick is 5 minutes late
    after = make_scheduler(clock, [schedule])
    late = after.run_due(clock())
    clock.now = datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC)
    on_time = after.run_due(clock())

    assert [o.action for o in late] == [TickAction.TOO_LATE]
    assert [o.action for o in on_time] == [TickAction.SUBMITTED]
    assert runs(schedule) == [
        "periodic:test.hourly:2026-05-04T10:00Z",
        "periodic:test.hourly:2026-05-04T12:00Z",
    ]


def test_a_missed_tick_inside_the_grace_window_runs_late_once(make_scheduler: Any) -> None:
    schedule = every_minute("test.daily", cron="0 2 * * *", grace_ms=3_600_000)
    clock = Clock(datetime(2026, 5, 3, 1, 0, tzinfo=UTC))
    before = make_scheduler(clock, [schedule])
    clock.now = datetime(2026, 5, 3, 2, 0, 1, tzinfo=UTC)
    before.step()
    before.stop()

    clock.now = datetime(2026, 5, 4, 2, 40, tzinfo=UTC)  # down over the 02:00 tick
    after = make_scheduler(clock, [schedule])
    outcomes = after.run_due(clock()) + after.run_due(clock.advance(minutes=1))

    assert [o.action for o in outcomes] == [TickAction.SUBMITTED]
    assert runs(schedule)[-1] == "periodic:test.daily:2026-05-04T02:00Z"


def test_a_schedule_that_never_ran_starts_at_its_first_tick_after_start(
    make_scheduler: Any,
) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    scheduler = make_scheduler(clock, [schedule])

    first = scheduler.run_due(clock())
    second = scheduler.run_due(clock.advance(seconds=31))

    assert [o.action for o in first] == [TickAction.BEFORE_START]
    assert [o.action for o in second] == [TickAction.SUBMITTED]


def test_a_sunday_schedule_fires_on_sunday_through_the_scheduler(make_scheduler: Any) -> None:
    schedule = every_minute("test.sunday", cron="0 9 * * sun")
    clock = Clock(datetime(2026, 1, 3, 23, 0, tzinfo=UTC))  # Saturday
    scheduler = make_scheduler(clock, [schedule])

    fired = []
    while clock.now < datetime(2026, 1, 6, tzinfo=UTC):
        fired += [o for o in scheduler.run_due(clock()) if o.action == TickAction.SUBMITTED]
        clock.advance(minutes=30)

    assert [o.tick for o in fired] == [datetime(2026, 1, 4, 9, 0, tzinfo=UTC)]
    assert fired[0].tick.strftime("%A") == "Sunday"
    assert runs(schedule) == ["periodic:test.sunday:2026-01-04T09:00Z"]


def test_the_standby_takes_over_within_the_lock_ttl_when_the_leader_dies(
    make_scheduler: Any, wait_for: Any
) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    leader = make_scheduler(clock, [schedule], ttl_ms=1_000)
    standby = make_scheduler(clock, [schedule], ttl_ms=1_000)
    leader.step()
    standby.step()
    assert (leader.is_leader, standby.is_leader) == (True, False)

    # The leader stops stepping: it is dead. Its lock outlives it by one TTL at most,
    # and the standby's first step after that takes it over.
    lock = leader.lock
    assert 0 < lock.client.pttl(lock.key) <= 1_000
    wait_for(lambda: not lock.client.exists(lock.key), timeout=5)
    standby.step()
    assert standby.is_leader
    assert standby.lock.holder().identity == standby.lock.identity
    leader.step()
    assert not leader.is_leader, "the old leader notices it lost the lock"


def test_the_leader_keeps_its_lock_by_renewing_it(make_scheduler: Any) -> None:
    schedule = every_minute()
    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    leader = make_scheduler(clock, [schedule], ttl_ms=600)
    standby = make_scheduler(clock, [schedule], ttl_ms=600)
    deadline = time.monotonic() + 2.0  # over three TTLs
    while time.monotonic() < deadline:
        leader.step()
        standby.step()
        assert leader.is_leader and not standby.is_leader
        time.sleep(0.05)


def test_a_stopped_leader_releases_the_lock_at_once(make_scheduler: Any) -> None:
    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    leader = make_scheduler(clock, [every_minute()], ttl_ms=30_000)
    standby = make_scheduler(clock, [every_minute()], ttl_ms=30_000)
    leader.step()
    leader.stop()
    standby.step()
    assert standby.is_leader


def test_leader_tasks_run_on_their_interval_only_on_the_leader_and_survive_errors(
    make_scheduler: Any, wait_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, list[tuple[str, float]]] = {"leader": [], "standby": []}

    def tasks(role: str) -> list[LeaderTask]:
        def recover() -> None:
            calls[role].append(("recover", time.monotonic()))

        def broken() -> None:
            calls[role].append(("broken", time.monotonic()))
            raise RuntimeError("boom")

        return [LeaderTask("recover", 0.2, recover), LeaderTask("broken", 0.2, broken)]

    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    leader = make_scheduler(clock, [every_minute()], leader_tasks=tasks("leader"))
    standby = make_scheduler(clock, [every_minute()], leader_tasks=tasks("standby"))

    def five_runs() -> bool:
        leader.step()
        standby.step()
        return [name for name, _ in calls["leader"]].count("recover") >= 5

    wait_for(five_runs, interval=0.02)

    assert calls["standby"] == []
    names = [name for name, _ in calls["leader"]]
    assert names.count("broken") == names.count("recover")
    runs = [at for name, at in calls["leader"] if name == "recover"]
    # On its interval (its next run is due 0.2 s after the last one began).
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(runs))
    assert "Leader task broken failed" in caplog.text


def test_register_leader_task_adds_to_every_new_scheduler(broker: Any) -> None:
    from jobs.scheduler import register_leader_task, unregister_leader_task

    calls: list[int] = []
    register_leader_task("tests.probe", 60, lambda: calls.append(1))
    try:
        scheduler = Scheduler(lock=leader_lock(ttl_ms=2_000), schedules=[])
        scheduler.step()
        scheduler.stop()
    finally:
        unregister_leader_task("tests.probe")
    assert calls == [1]


def test_the_overview_lists_every_schedule_with_its_last_and_next_run(
    make_scheduler: Any,
) -> None:
    usage = get_schedule("tenant.check_usage_limits")
    clock = Clock(datetime(2026, 5, 4, 9, 59, 0, tzinfo=UTC))
    scheduler = make_scheduler(clock, [usage])
    clock.advance(minutes=1, seconds=1)
    scheduler.step()

    rows = {row.name: row for row in schedules_overview(now=clock())}

    assert {
        "analytics.daily_report",
        "cleanup.remove_old_jobs",
        "tenant.check_usage_limits",
    } <= set(rows)
    row = rows["tenant.check_usage_limits"]
    assert (row.queue, row.cron) == ("tenant_ops", "*/30 * * * *")
    assert row.last_tick == datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    assert row.last_status == "queued"
    assert row.next_run == datetime(2026, 5, 4, 10, 30, tzinfo=UTC)
    report = rows["analytics.daily_report"]
    assert (report.queue, report.last_tick) == ("analytics", None)
    assert report.next_run == datetime(2026, 5, 5, 2, 0, tzinfo=UTC)
    assert rows["cleanup.remove_old_jobs"].queue == "low_priority"


def test_the_daily_report_schedule_reports_the_day_before_its_tick() -> None:
    schedule = get_schedule("analytics.daily_report")
    assert schedule.payload_for(datetime(2026, 3, 1, 2, 0, tzinfo=UTC)) == {"day": "2026-02-28"}


def test_scheduler_logs_name_the_leader(
    make_scheduler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock(datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC))
    scheduler = make_scheduler(clock, [every_minute()])
    scheduler.step()
    assert f"Scheduler {scheduler.lock.identity} is now the leader" in caplog.text


def _run_row(key: str, *, organization: Any = None) -> Job:
    return Job.objects.create(
        job_type="tests.count",
        queue="default",
        status="succeeded",
        idempotency_key=key,
        organization=organization,
    )


def test_last_run_is_the_latest_tick_of_that_schedule_only() -> None:
    organization = Organization.objects.create(slug="school", name="School")
    schedule = every_minute("test.a_b")
    latest = _run_row("periodic:test.a_b:2026-10-01T00:00Z")
    _run_row("periodic:test.a_b:2026-09-30T23:59Z")
    _run_row("periodic:test.axb:2026-12-01T00:00Z")  # "_" is no wildcard
    _run_row("periodic:test.a_bc:2026-12-01T00:00Z")  # another schedule, longer name
    _run_row("periodic:test.a_b:2026-12-01T00:00Z", organization=organization)  # not a run

    found = last_run(schedule)

    assert found is not None
    assert (found.job_id, found.tick) == (str(latest.pk), datetime(2026, 10, 1, tzinfo=UTC))
    assert last_run(every_minute("test.never")) is None


def test_last_run_reads_a_range_of_the_system_key_index_not_every_system_key() -> None:
    # Enough other system keys, with fresh statistics, that reading them all costs the
    # planner clearly more than the range: with a handful of rows and no statistics it
    # may pick any index whose cost comes out the same.
    first = datetime(2026, 10, 1, tzinfo=UTC)
    Job.objects.bulk_create(
        Job(
            job_type="tests.count",
            queue="default",
            status="succeeded",
            idempotency_key=(
                f"periodic:test.other{n % 20}:{first + timedelta(minutes=n):%Y-%m-%dT%H:%MZ}"
            ),
        )
        for n in range(2_000)
    )
    _run_row("periodic:test.mine:2026-10-01T00:00Z")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    with connection.cursor() as cursor, CaptureQueriesContext(connection) as queries:
        cursor.execute("SET enable_seqscan = off")  # a table this small is read whole otherwise
        try:
            assert last_run(every_minute("test.mine")) is not None
        finally:
            cursor.execute("RESET enable_seqscan")
    sql = next(q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")

    assert "jobs_system_key_c" in plan
    assert "Index Cond" in plan and "periodic:test.mine:" in plan.split("Index Cond", 1)[1]
