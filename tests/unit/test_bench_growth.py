"""bench/growth.py and bench/ledger_fill.py: the growth rows' verdicts and the ledger's COPY lines."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from bench.growth import growth_database_url, summarise
from bench.ledger_fill import DAYS, job_lines, periodic_lines

COLUMNS = 23  # bench.ledger_fill._JOB_COLUMNS


def _cell(v: float) -> dict[str, Any]:
    return {"b": {"median": v, "min": v, "max": v, "n": 1}}


def _empty(bulk: float, single: float, noop: float) -> dict[str, Any]:
    cell = _cell
    return {"rows": {"submit_bulk": cell(bulk), "submit_single": cell(single), "noop": cell(noop)}}


def _run(bulk: float, single: float, noop: float, dashboard_ms: float) -> dict[str, Any]:
    return {
        "submit_bulk": {"rate": bulk},
        "submit_single": {"rate": single},
        "noop": {"rate": noop},
        "admin": {
            "dashboard": {"median_ms": dashboard_ms, "worst_ms": dashboard_ms},
            "list, superuser": {"median_ms": 50.0, "worst_ms": 60.0},
        },
    }


def test_each_row_is_met_at_nine_tenths_of_its_empty_ledger_figure_and_missed_below() -> None:
    runs = [_run(900, 400, 1000, 450), _run(950, 300, 800, 700), _run(880, 350, 600, 480)]

    growth = summarise(runs, _empty(bulk=1000, single=400, noop=1000))

    verdicts = {t["target"].split(" on the")[0]: t for t in growth["targets"]}
    assert verdicts["bulk submission"]["verdict"] == "met"  # median 900 / 1000
    assert verdicts["bulk submission"]["ratio"] == 0.9
    assert verdicts["single submission, Python loop"]["verdict"] == "missed"  # 350 / 400
    assert verdicts["processing, 20k no-op"]["verdict"] == "missed"  # 800 / 1000
    assert verdicts["admin dashboard"]["verdict"] == "met"  # median 480 ms
    assert verdicts["admin dashboard"]["b"] == 480
    assert growth["admin"]["list, superuser"]["median"] == 50


def test_a_dashboard_over_500_ms_or_a_row_not_measured_says_so() -> None:
    growth = summarise([_run(900, 400, 1000, 501)], {"rows": {}})

    verdicts = [t["verdict"] for t in growth["targets"]]
    assert verdicts == ["not measured", "not measured", "not measured", "missed"]


def test_the_growth_database_defaults_to_the_bench_database_name_with_growth(
    monkeypatch: Any,
) -> None:
    monkeypatch.delenv("BENCH_GROWTH_DATABASE_URL", raising=False)
    url = growth_database_url("postgres://postgres@127.0.0.1:5432/tbx_bench")
    assert url == "postgres://postgres@127.0.0.1:5432/tbx_bench_growth"
    monkeypatch.setenv("BENCH_GROWTH_DATABASE_URL", "postgres://x@h:1/other")
    assert growth_database_url("postgres://postgres@127.0.0.1:5432/tbx_bench") == (
        "postgres://x@h:1/other"
    )


def test_the_ledger_lines_are_finished_jobs_over_90_days_in_copy_text_format() -> None:
    end = time.time()
    lines = list(job_lines(20_000, [7, 8, 9], end))

    rows = [line.rstrip("\n").split("\t") for line in lines]
    assert {len(row) for row in rows} == {COLUMNS}
    statuses = Counter(row[6] for row in rows)
    assert set(statuses) == {"succeeded", "failed", "cancelled"}
    assert 0.8 < statuses["succeeded"] / len(rows) < 0.9
    assert {row[1] for row in rows} <= {"7", "8", "9", r"\N"}
    for row in rows[:50]:
        json.loads(row[5])  # the payload
        assert row[11] == r"\N" or json.loads(row[11]) is not None
    assert rows[0][16] < rows[-1][16]  # created in order, oldest first
    start = end - DAYS * 86400  # the first job is created within a second of it
    days = {time.strftime("%Y-%m-%d", time.gmtime(start + s)) for s in (0, 1)}
    assert rows[0][16][:10] in days


def test_the_scheduler_runs_have_their_periodic_keys_and_no_organization() -> None:
    rows = [line.rstrip("\n").split("\t") for line in periodic_lines(time.time())]

    keys = [row[15] for row in rows]
    assert len(set(keys)) == len(keys)
    assert {row[1] for row in rows} == {r"\N"}
    names = Counter(key.split(":")[1] for key in keys)
    assert names["tenant.check_usage_limits"] > 40 * names["analytics.daily_report"]
    assert all(key.endswith("Z") for key in keys)
