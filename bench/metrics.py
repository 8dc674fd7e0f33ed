"""What the bench reports: the rows, the floors, medians over rounds, ratios and targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.config import NAMES, PEERS

Getter = Callable[[dict[str, Any]], float | None]


def get(*path: str) -> Getter:
    def getter(run: dict[str, Any]) -> float | None:
        value: Any = run
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if value is None else float(value)

    return getter


def _first_idle(run: dict[str, Any]) -> float | None:
    values = (run.get("latency") or {}).get("after_idle_ms") or []
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    getter: Getter
    higher_is_better: bool = True
    #: The floor (key of FLOORS) B's figure is divided by, if any.
    floor: str | None = None


METRICS = [
    Metric("submit_bulk", "bulk submission", "jobs/s", get("submit_bulk", "rate")),
    Metric("http_batch", "bulk submission, HTTP batch", "jobs/s", get("http", "batch", "rate")),
    Metric(
        "submit_single",
        "single submission, Python loop",
        "jobs/s",
        get("submit_single", "rate"),
        floor="submission",
    ),
    Metric(
        "http_single",
        "single submission, HTTP x8 clients",
        "req/s",
        get("http", "single", "rate"),
        floor="http",
    ),
    Metric("noop", "processing, 20k no-op", "jobs/s", get("noop", "rate")),
    Metric("sleep", "processing, 5k x 10 ms sleep", "jobs/s", get("sleep", "rate")),
    Metric("lat_p50", "enqueue→start p50 (idle)", "ms", get("latency", "p50_ms"), False),
    Metric("lat_p99", "enqueue→start p99 (idle)", "ms", get("latency", "p99_ms"), False),
    Metric("lat_idle", "first job after 2 s idle", "ms", _first_idle, False),
    Metric("urgent", "urgent job behind 10k backlog", "ms", get("noop", "urgent_start_ms"), False),
    Metric("rss", "workers' peak RSS (sum)", "MiB", get("peak_rss_mb"), False),
]


@dataclass(frozen=True)
class Floor:
    key: str
    label: str
    unit: str
    getter: Getter
    system: str  # whose runs hold it: "f" (bench.floors) or "b" (the HTTP phase)
    compared: str  # the metric of B's it is the floor of


FLOORS = [
    Floor(
        "postgres",
        "Postgres: INSERT + commit per row",
        "rows/s",
        get("floors", "postgres", "rate"),
        "f",
        "submit_single",
    ),
    Floor(
        "redis",
        "Redis: one EVALSHA (HSET + RPUSH) per message",
        "msgs/s",
        get("floors", "redis", "rate"),
        "f",
        "submit_single",
    ),
    Floor(
        "submission",
        "submission: INSERT + commit + one Redis call",
        "jobs/s",
        get("floors", "submission", "rate"),
        "f",
        "submit_single",
    ),
    Floor(
        "http",
        "HTTP: same server's /healthz, x8 clients",
        "req/s",
        get("http", "healthz", "rate"),
        "b",
        "http_single",
    ),
]


def _cell(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(runs: list[dict[str, Any]], systems: str) -> dict[str, Any]:
    """Medians [min, max] per row and system, the floors, and B's ratios."""
    rows: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        row: dict[str, Any] = {}
        for system in systems:
            values = [
                v for r in runs if r["system"] == system if (v := metric.getter(r)) is not None
            ]
            if values:
                row[system] = _cell(values)
        rows[metric.key] = row
    floors: dict[str, Any] = {}
    for floor in FLOORS:
        values = [
            v for r in runs if r["system"] == floor.system if (v := floor.getter(r)) is not None
        ]
        if values:
            floors[floor.key] = _cell(values)
    summary: dict[str, Any] = {"rows": rows, "floors": floors, "ratios": {}}
    for metric in METRICS:
        summary["ratios"][metric.key] = b_ratios(summary, metric)
    return summary


def median(summary: dict[str, Any], key: str, system: str) -> float | None:
    cell = summary["rows"].get(key, {}).get(system)
    return None if cell is None else float(cell["median"])


def floor_median(summary: dict[str, Any], key: str) -> float | None:
    cell = summary["floors"].get(key)
    return None if cell is None else float(cell["median"])


def b_ratios(summary: dict[str, Any], metric: Metric) -> dict[str, Any]:
    """B's median over the best peer's on this row (and which peer), and over its floor."""
    b = median(summary, metric.key, "b")
    out: dict[str, Any] = {"best_peer": None, "to_best_peer": None, "to_floor": None}
    if b is None:
        return out
    peers = {p: v for p in PEERS if (v := median(summary, metric.key, p)) is not None}
    if peers:
        pick = max if metric.higher_is_better else min
        best = pick(peers, key=lambda p: peers[p])
        out["best_peer"] = best
        out["to_best_peer"] = b / peers[best] if peers[best] else None
    if metric.floor is not None:
        floor = floor_median(summary, metric.floor)
        out["to_floor"] = b / floor if floor else None
    return out


@dataclass(frozen=True)
class Target:
    label: str
    numerator: tuple[str, str]  # (metric, system) or ("floor", key)
    denominator: tuple[str, str]
    bound: float
    at_least: bool  # ratio >= bound (else <= bound)


TARGETS = [
    Target("no-op processing ≥ 1.0x raw Dramatiq", ("noop", "b"), ("noop", "a"), 1.0, True),
    Target("no-op processing ≥ 1.0x Huey", ("noop", "b"), ("noop", "d"), 1.0, True),
    Target("10 ms sleep ≥ 1.0x raw Dramatiq", ("sleep", "b"), ("sleep", "a"), 1.0, True),
    Target(
        "single submission, Python loop ≥ 0.7x its floor (INSERT + commit + one Redis call)",
        ("submit_single", "b"),
        ("floor", "submission"),
        0.7,
        True,
    ),
    Target(
        "single submission, Python loop ≥ 0.49x Celery (2x the 0.246 of issue 21)",
        ("submit_single", "b"),
        ("submit_single", "c"),
        0.49,
        True,
    ),
    Target(
        "HTTP single submission ≥ 0.6x the same server's /healthz",
        ("http_single", "b"),
        ("floor", "http"),
        0.6,
        True,
    ),
    Target("enqueue→start p50 ≤ Celery's", ("lat_p50", "b"), ("lat_p50", "c"), 1.0, False),
    Target("enqueue→start p99 ≤ Celery's", ("lat_p99", "b"), ("lat_p99", "c"), 1.0, False),
    Target("first job after idle ≤ Celery's", ("lat_idle", "b"), ("lat_idle", "c"), 1.0, False),
    Target("urgent job behind 10k ≤ Celery's", ("urgent", "b"), ("urgent", "c"), 1.0, False),
    Target(
        "workers' peak RSS ≤ 2.0x raw Dramatiq (both 2 processes x 8 threads)",
        ("rss", "b"),
        ("rss", "a"),
        2.0,
        False,
    ),
]


def _value(summary: dict[str, Any], ref: tuple[str, str]) -> float | None:
    if ref[0] == "floor":
        return floor_median(summary, ref[1])
    return median(summary, *ref)


def _unit(ref: tuple[str, str]) -> str:
    if ref[0] == "floor":
        return next(f.unit for f in FLOORS if f.key == ref[1])
    return next(m.unit for m in METRICS if m.key == ref[0])


def _who(ref: tuple[str, str]) -> str:
    return "floor" if ref[0] == "floor" else NAMES[ref[1]]


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets: each a ratio of medians of this run, met, missed or not measured."""
    out = []
    for t in TARGETS:
        num, den = _value(summary, t.numerator), _value(summary, t.denominator)
        ratio = None if num is None or den is None or den == 0 else num / den
        if ratio is None:
            verdict = "not measured"
        elif t.at_least:
            verdict = "met" if ratio >= t.bound else "missed"
        else:
            verdict = "met" if ratio <= t.bound else "missed"
        out.append(
            {
                "target": t.label,
                "ratio": ratio,
                "b": num,
                "other": den,
                "other_name": _who(t.denominator),
                "unit": _unit(t.numerator),
                "verdict": verdict,
            }
        )
    return out
