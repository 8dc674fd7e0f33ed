"""``manage.py periodiq`` as subprocesses: one leader, one run per tick, takeover after kill -9."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.models import Job
from jobs.scheduler import get_schedule, leader_lock

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOCK_TTL_MS = 10_000
SCHEDULER_ENV = {"JOBS_SCHEDULER_LOCK_TTL_MS": str(LOCK_TTL_MS), "JOBS_SCHEDULER_POLL_MS": "200"}


def _ticks() -> list[datetime]:
    schedule = get_schedule("tests.every_minute")
    keys = Job.objects.filter(idempotency_key__startswith=schedule.key_prefix()).values_list(
        "idempotency_key", flat=True
    )
    return sorted(t for key in keys if key and (t := schedule.tick_of_key(key)) is not None)


def _minute_boundaries(after: datetime, until: datetime) -> list[datetime]:
    tick = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found = []
    while tick <= until:
        found.append(tick)
        tick += timedelta(minutes=1)
    return found


@pytest.mark.timeout(480)
def test_two_schedulers_run_a_minutely_schedule_exactly_three_times_in_three_minutes_and_the_standby_takes_over_after_kill_9(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    launched = datetime.now(UTC)
    first = start_command("periodiq", **SCHEDULER_ENV)
    second = start_command("periodiq", **SCHEDULER_ENV)
    lock = leader_lock(identity="test-observer")
    wait_for(
        lambda: all("started with" in p.output() for p in (first, second)) and lock.holder(),
        timeout=60,
        interval=0.1,
    )
    window_start = datetime.now(UTC)
    window_end = window_start + timedelta(minutes=3)

    wait_for(
        lambda: datetime.now(UTC) >= window_end + timedelta(seconds=4), timeout=200, interval=1
    )

    assert first.proc.poll() is None, first.output()
    assert second.proc.poll() is None, second.output()
    in_window = [t for t in _ticks() if window_start < t <= window_end]
    assert in_window == _minute_boundaries(window_start, window_end)
    assert len(in_window) == 3
    assert not [t for t in _ticks() if t <= launched], "no catch-up run of a never-run schedule"
    leaders = [p for p in (first, second) if "is now the leader" in p.output()]
    assert len(leaders) == 1, "one leader the whole time"
    [leader] = leaders
    standby = second if leader is first else first
    holder = lock.holder()
    assert holder is not None and holder.identity.split(":")[1] == str(leader.proc.pid)

    runs_before_kill = len(_ticks())
    os.kill(leader.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: (h := lock.holder()) is not None and h.identity != holder.identity,
        timeout=LOCK_TTL_MS / 1000 + 10,
        interval=0.05,
    )
    takeover_seconds = time.monotonic() - killed_at
    print(f"standby took over {takeover_seconds:.2f} s after kill -9 (TTL {LOCK_TTL_MS} ms)")
    new_holder = lock.holder()
    assert new_holder is not None
    assert new_holder.identity.split(":")[1] == str(standby.proc.pid)
    assert takeover_seconds <= LOCK_TTL_MS / 1000 + 0.5

    # The new leader runs the next tick, once.
    wait_for(lambda: len(_ticks()) == runs_before_kill + 1, timeout=75, interval=0.5)
    next_tick = _ticks()[-1]
    assert f"tick {next_tick:%Y-%m-%d %H:%M}" in standby.output()
    assert len(set(_ticks())) == len(_ticks())
    assert standby.stop() == 0, standby.output()


def test_periodiq_list_prints_each_schedule_with_its_next_run_in_utc(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    listing = start_command("periodiq", "--list")
    wait_for(lambda: listing.proc.poll() is not None, timeout=60)

    output = listing.output()
    assert listing.proc.returncode == 0, output
    assert "Schedules (times in UTC" in output
    lines = {line.split()[0]: line for line in output.splitlines()[2:] if line.startswith("  ")}
    assert "0 2 * * *" in lines["analytics.daily_report"]
    assert "analytics.generate_daily_report" in lines["analytics.daily_report"]
    assert " analytics " in lines["analytics.daily_report"]
    assert "0 3 * * *" in lines["cleanup.remove_old_jobs"]
    assert "low_priority" in lines["cleanup.remove_old_jobs"]
    assert "*/30 * * * *" in lines["tenant.check_usage_limits"]
    assert "tenant_ops" in lines["tenant.check_usage_limits"]
    next_report = get_schedule("analytics.daily_report").cron.next_after(datetime.now(UTC))
    assert f"{next_report:%Y-%m-%d %H:%M}" in lines["analytics.daily_report"]
    assert "never" in lines["analytics.daily_report"]
    assert "Leader: none" in output
