"""Cron evaluation in UTC, including the day-of-week cases periodiq 0.14 gets wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest
from periodiq import cron as periodiq_cron

from jobs.errors import InvalidSchedule
from jobs.scheduler.cron import CronExpression

SUNDAY_0900 = datetime(2026, 1, 4, 9, 0, tzinfo=UTC)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN", "sat-sun", "0,3", "*/7"])
def test_a_sunday_schedule_fires_on_sunday_whichever_way_sunday_is_written(dow: str) -> None:
    expression = CronExpression(f"0 9 * * {dow}")

    assert SUNDAY_0900.strftime("%A") == "Sunday"
    assert expression.matches(SUNDAY_0900)
    assert expression.next_after(SUNDAY_0900 - timedelta(days=1)) == SUNDAY_0900
    assert expression.latest_at_or_before(SUNDAY_0900 + timedelta(hours=5)) == SUNDAY_0900


def test_periodiq_itself_never_matches_sunday_written_as_0_or_sun() -> None:
    # The bug we work around: periodiq compares cron's Sunday=0 with isoweekday()'s 7.
    sunday = pendulum.instance(SUNDAY_0900)
    assert not periodiq_cron("0 9 * * 0").validate(sunday)
    assert not periodiq_cron("0 9 * * sun").validate(sunday)
    assert CronExpression("0 9 * * 0").matches(SUNDAY_0900)


def test_a_sunday_schedule_does_not_fire_on_other_days() -> None:
    expression = CronExpression("0 9 * * sun")
    for days in range(1, 7):
        assert not expression.matches(SUNDAY_0900 + timedelta(days=days))
    assert expression.next_after(SUNDAY_0900) == SUNDAY_0900 + timedelta(days=7)


def test_monday_to_friday_skips_the_weekend() -> None:
    expression = CronExpression("30 8 * * mon-fri")
    friday = at(2026, 1, 2, 8, 30)
    assert expression.next_after(friday) == at(2026, 1, 5, 8, 30)


def test_the_next_tick_resets_smaller_fields_when_a_larger_one_carries() -> None:
    # periodiq answers 02:10 here: it keeps the minute it reached in hour 01.
    assert CronExpression("*/5 2 * * *").next_after(at(2026, 1, 1, 1, 7)) == at(2026, 1, 1, 2, 0)
    assert CronExpression("0 2,14 * * mon").next_after(at(2026, 1, 3, 13, 0)) == at(
        2026, 1, 5, 2, 0
    )


def test_the_toolboxai_schedules_fire_at_their_utc_times() -> None:
    daily_report = CronExpression("0 2 * * *")
    cleanup = CronExpression("0 3 * * *")
    usage = CronExpression("*/30 * * * *")
    now = at(2026, 6, 30, 23, 45)

    assert daily_report.next_after(now) == at(2026, 7, 1, 2, 0)
    assert cleanup.next_after(now) == at(2026, 7, 1, 3, 0)
    assert usage.next_after(now) == at(2026, 7, 1, 0, 0)
    assert usage.latest_at_or_before(now) == at(2026, 6, 30, 23, 30)


def test_times_in_other_zones_are_evaluated_in_utc() -> None:
    paris_0300 = datetime(2026, 1, 10, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    assert CronExpression("0 2 * * *").matches(paris_0300)
    assert CronExpression("0 2 * * *").next_after(paris_0300).tzinfo is UTC


def test_a_restricted_day_of_month_and_day_of_week_fire_on_either() -> None:
    expression = CronExpression("0 0 13 * fri")
    assert expression.matches(at(2026, 1, 13, 0, 0))  # a Tuesday the 13th
    assert expression.matches(at(2026, 1, 16, 0, 0))  # a Friday
    assert not expression.matches(at(2026, 1, 14, 0, 0))


def test_month_and_leap_day_boundaries() -> None:
    assert CronExpression("0 0 31 * *").next_after(at(2026, 1, 31, 0, 0)) == at(2026, 3, 31, 0, 0)
    assert CronExpression("0 0 29 2 *").next_after(at(2026, 1, 1)) == at(2028, 2, 29, 0, 0)
    assert CronExpression("@yearly").latest_at_or_before(at(2026, 5, 5, 5, 5)) == at(2026, 1, 1)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 2 * *", "has 4 fields"),
        ("61 * * * *", "minute field must stay within 0-59"),
        ("0 25 * * *", "hour field"),
        ("0 0 * * mon-funday", "cannot be parsed"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_an_invalid_expression_is_refused_with_a_clear_error(
    expression: str, fragment: str
) -> None:
    with pytest.raises(InvalidSchedule, match=fragment):
        CronExpression(expression).next_after(at(2026, 1, 1))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="no time zone"):
        CronExpression("* * * * *").matches(datetime(2026, 1, 1))
