"""Error messages are grouped by their shape; the dashboard chart is laid out server-side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.admin.charts import throughput_chart
from jobs.scheduler.overview import schedules_overview
from jobs.selectors.dashboard import MinuteCount
from jobs.selectors.dead_letters import group_key, normalise_error_message


def test_messages_differing_only_in_ids_and_numbers_share_a_group() -> None:
    a = normalise_error_message(
        "Timeout after 30 s on 4f0c2b4e-8d7a-4a55-9a3e-0d6b9b1c2e3f (retries exhausted after 4 attempts)"
    )
    b = normalise_error_message(
        "Timeout after 31.5 s on 9ab27c10-1111-4222-8333-444455556666 (retries exhausted after 2 attempts)"
    )

    assert a == b == "Timeout after <n> s on <id> (retries exhausted after <n> attempts)"
    assert group_key(job_type="t", error_type="E", message=a) == group_key(
        job_type="t", error_type="E", message=b
    )
    assert group_key(job_type="t", error_type="E", message=a) != group_key(
        job_type="t", error_type="Other", message=a
    )


def test_different_messages_are_different_groups() -> None:
    assert normalise_error_message("connection refused") != normalise_error_message(
        "quota exceeded"
    )


def test_the_chart_stacks_failed_on_succeeded_and_draws_the_failure_rate() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    series = [MinuteCount(start + timedelta(minutes=i), 0, 0) for i in range(1440)]
    series[10] = MinuteCount(series[10].minute, finished=4, failed=1)
    series[11] = MinuteCount(series[11].minute, finished=2, failed=2)

    chart = throughput_chart(series)

    assert chart.peak == 4
    assert chart.total_finished == 6
    assert chart.total_failed == 3
    assert chart.failure_rate_percent == 50.0
    assert [(b.x, b.height) for b in chart.succeeded_bars] == [(10, 142.5)]
    assert [b.x for b in chart.failed_bars] == [10, 11]
    assert chart.rate_path.startswith("M10,")
    assert "L11,10.0" in chart.rate_path  # 100 % failed reaches the top
    assert chart.ticks[0] == (0, "00:00")


@pytest.mark.django_db
def test_the_dashboard_lists_the_spec_schedules_with_their_next_runs() -> None:
    rows = {row.job_type: row for row in schedules_overview()}

    assert rows["analytics.generate_daily_report"].cron == "0 2 * * *"
    assert rows["cleanup.remove_old_jobs"].cron == "0 3 * * *"
    assert rows["tenant.check_usage_limits"].cron == "*/30 * * * *"
    assert all(row.next_run is not None for row in rows.values())
    assert rows["cleanup.remove_old_jobs"].last_tick is None
