"""What every system's client shares: JSON output, percentiles, latency bookkeeping."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

STAMPS_KEY = "bench:stamps"
BATCH = 1_000

Action = Callable[[argparse.Namespace], dict[str, Any]]


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (pct in 0-100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_summary(latencies_ms: list[float], idle_ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms) if latencies_ms else None,
        "mean_ms": statistics.fmean(latencies_ms) if latencies_ms else None,
        "after_idle_ms": idle_ms,
    }


def paced(n: int, gap_ms: float, send: Callable[[int], None]) -> None:
    """Call ``send(i)`` n times, one every ``gap_ms`` (the worker is idle in between)."""
    for i in range(n):
        send(i)
        time.sleep(gap_ms / 1000)


def wait_stamps(client: redis.Redis, count: int, timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while client.llen(STAMPS_KEY) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    stamps: dict[str, float] = {}
    for raw in client.lrange(STAMPS_KEY, 0, -1):
        tag, when = raw.decode().split(" ")
        stamps[tag] = float(when)
    return stamps


def latencies(sent: dict[str, float], started: dict[str, float], n: int) -> dict[str, Any]:
    missing = [tag for tag in sent if tag not in started]
    lat = [(started[str(i)] - sent[str(i)]) * 1000 for i in range(n) if str(i) in started]
    idle = [(started[tag] - sent[tag]) * 1000 for tag in list(sent)[n:] if tag in started]
    return {**latency_summary(lat, idle), "missing": len(missing)}


def stamped_latency(
    args: argparse.Namespace, redis_url: str, send_stamp: Callable[[str], object]
) -> dict[str, Any]:
    """Latency of a system whose stamp task records its start in ``bench:stamps``."""
    client = redis.Redis.from_url(redis_url)
    client.delete(STAMPS_KEY)
    sent: dict[str, float] = {}

    def send(i: int) -> None:
        sent[str(i)] = time.time()
        send_stamp(str(i))

    paced(args.n, args.gap_ms, send)
    for i in range(args.idle_samples):
        time.sleep(2.0)
        send(args.n + i)
    stamps = wait_stamps(client, len(sent))
    return latencies(sent, stamps, args.n)


def timed(n: int, run: Callable[[], None]) -> dict[str, Any]:
    """Run ``run`` once and report n jobs' rate, wall and client CPU time."""
    began, cpu = time.perf_counter(), time.process_time()
    run()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": n, "seconds": elapsed, "rate": n / elapsed, "client_cpu_seconds": cpu}


def batches(n: int, urgent_after: int | None) -> list[tuple[int, int]]:
    """[start, end) slices of at most BATCH jobs, one of which starts at ``urgent_after``."""
    cuts = sorted({*range(0, n, BATCH), *([urgent_after] if urgent_after is not None else [])})
    return [(start, min(n, nxt)) for start, nxt in zip(cuts, [*cuts[1:], n], strict=True)]
