"""The bench's client side: sends jobs to one system and times it.

``python -m bench.client <system> <action> [options]``, run by ``bench/run.py``
in a fresh process per call (A, B and C need different Django settings). The
last line of stdout is a JSON object with the measurement.

Systems: ``a`` raw Dramatiq, ``b`` this project, ``c`` Celery.
Actions:
  setup            (b) create the bench organization (limits raised) and an API key
  stage            enqueue the throughput workload into a staging namespace
  submit-bulk      bulk submission rate (a: pipelined Lua; b: job_submit_many; c: group)
  submit-single    one-at-a-time submission rate (a Python loop)
  latency          enqueue→start latency with idle workers, and after 2 s idle
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

STAMPS_KEY = "bench:stamps"
BATCH = 1_000


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (pct in 0-100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _latency_summary(latencies_ms: list[float], idle_ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms) if latencies_ms else None,
        "mean_ms": statistics.fmean(latencies_ms) if latencies_ms else None,
        "after_idle_ms": idle_ms,
    }


def _paced(n: int, gap_ms: float, send: Callable[[int], None]) -> None:
    """Call ``send(i)`` n times, one every ``gap_ms`` (the worker is idle in between)."""
    for i in range(n):
        send(i)
        time.sleep(gap_ms / 1000)


def _wait_stamps(client: redis.Redis, count: int, timeout: float = 60.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while client.llen(STAMPS_KEY) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    stamps: dict[str, float] = {}
    for raw in client.lrange(STAMPS_KEY, 0, -1):
        tag, when = raw.decode().split(" ")
        stamps[tag] = float(when)
    return stamps


# --- A: raw Dramatiq ------------------------------------------------------------


def _a_pipelined(messages: Sequence[Any]) -> None:
    """RedisBroker.enqueue's Lua script, pipelined: the fastest enqueue raw Dramatiq has."""
    from bench.raw_dramatiq import broker

    dispatch = broker.scripts["dispatch"]
    max_unpack = broker._max_unpack_size()
    with broker.client.pipeline(transaction=False) as pipe:
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            broker.emit_before("enqueue", message, None)
            dispatch(
                keys=[broker.namespace],
                args=[
                    "enqueue",
                    int(time.time() * 1000),
                    message.queue_name,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,
                    max_unpack,
                    message.options["redis_message_id"],
                    message.encode(),
                ],
                client=pipe,
            )
        pipe.execute()


def _a_workload(kind: str, n: int, sleep_ms: int) -> list[Any]:
    from bench.raw_dramatiq import noop, sleep

    if kind == "noop":
        return [noop.message() for _ in range(n)]
    return [sleep.message(sleep_ms) for _ in range(n)]


def a_stage(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import stamp

    messages = _a_workload(args.kind, args.n, args.sleep_ms)
    for start in range(0, len(messages), BATCH):
        if args.urgent_after is not None and start == args.urgent_after:
            # Raw Dramatiq's priority only reorders prefetched messages: the urgent job
            # goes to the same Redis list, behind the backlog.
            _a_pipelined([stamp.message_with_options(args=("urgent",), priority=0)])
        _a_pipelined(messages[start : start + BATCH])
    return {"staged": len(messages)}


def a_submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    messages = _a_workload("noop", args.n, 0)
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(messages), BATCH):
        _a_pipelined(messages[start : start + BATCH])
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def a_submit_single(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import noop

    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        noop.send()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def a_latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import REDIS_URL, stamp

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(STAMPS_KEY)
    sent: dict[str, float] = {}

    def send(i: int) -> None:
        sent[str(i)] = time.time()
        stamp.send(str(i))

    _paced(args.n, args.gap_ms, send)
    for i in range(args.idle_samples):
        time.sleep(2.0)
        send(args.n + i)
    stamps = _wait_stamps(client, len(sent))
    return _latencies(sent, stamps, args.n)


def _latencies(sent: dict[str, float], started: dict[str, float], n: int) -> dict[str, Any]:
    missing = [tag for tag in sent if tag not in started]
    lat = [(started[str(i)] - sent[str(i)]) * 1000 for i in range(n) if str(i) in started]
    idle = [(started[tag] - sent[tag]) * 1000 for tag in list(sent)[n:] if tag in started]
    return {**_latency_summary(lat, idle), "missing": len(missing)}


# --- B: this project ------------------------------------------------------------


def _b_setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
    import django

    django.setup()


def _b_org() -> Any:
    from tenants.models import Organization

    return Organization.objects.get(slug="bench")


def b_setup(args: argparse.Namespace) -> dict[str, Any]:
    _b_setup_django()
    from tenants.models import Membership, Organization
    from tenants.services import api_key_create, organization_create

    org = Organization.objects.filter(slug="bench").first()
    if org is None:
        org = organization_create(slug="bench", name="Benchmark", owner_username="bench")
    # Fairness stays on, with limits high enough to admit the whole benchmark.
    org.max_submissions_per_minute = 100_000_000
    org.max_concurrent_jobs = 1_000_000
    org.monthly_job_quota = None
    org.save()
    membership = Membership.objects.get(organization=org, user__username="bench")
    issued = api_key_create(membership=membership, name=f"bench-{int(time.time())}")
    return {"organization_id": org.pk, "api_key": issued.raw}


def _b_requests(kind: str, n: int, sleep_ms: int, priority: int = 5) -> list[Any]:
    from jobs.services import JobRequest

    payload: dict[str, Any] = {"message": "bench"}
    if kind == "sleep":
        payload["sleep_seconds"] = sleep_ms / 1000
    return [JobRequest(job_type="diagnostics.echo", payload=payload, priority=priority)] * n


def b_stage(args: argparse.Namespace) -> dict[str, Any]:
    _b_setup_django()
    from jobs.services import job_submit, job_submit_many

    org = _b_org()
    requests = _b_requests(args.kind, args.n, args.sleep_ms)
    urgent_id = None
    for start in range(0, len(requests), BATCH):
        if args.urgent_after is not None and start == args.urgent_after:
            urgent = job_submit(
                job_type="diagnostics.echo",
                payload={"message": "urgent"},
                organization=org,
                priority=9,
            )
            urgent_id = str(urgent.job.id)
        job_submit_many(requests=requests[start : start + BATCH], organization=org)
    return {"staged": len(requests), "urgent_id": urgent_id}


def b_submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    _b_setup_django()
    from jobs.services import job_submit_many

    org = _b_org()
    requests = _b_requests("noop", args.n, 0)
    job_submit_many(requests=requests[:10], organization=org)  # warm up connections
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(requests), BATCH):
        job_submit_many(requests=requests[start : start + BATCH], organization=org)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def b_submit_single(args: argparse.Namespace) -> dict[str, Any]:
    _b_setup_django()
    from jobs.services import job_submit

    org = _b_org()
    job_submit(job_type="diagnostics.echo", payload={"message": "warm"}, organization=org)
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        job_submit(job_type="diagnostics.echo", payload={"message": "bench"}, organization=org)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def b_latency(args: argparse.Namespace) -> dict[str, Any]:
    _b_setup_django()
    from jobs.models import Job
    from jobs.services import job_submit

    org = _b_org()
    sent: dict[str, float] = {}
    ids: dict[str, str] = {}

    def send(i: int) -> None:
        began = time.time()
        job = job_submit(
            job_type="diagnostics.echo", payload={"message": str(i)}, organization=org
        ).job
        sent[str(i)] = began
        ids[str(job.id)] = str(i)

    _paced(args.n, args.gap_ms, send)
    for i in range(args.idle_samples):
        time.sleep(2.0)
        send(args.n + i)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = list(
            Job.objects.filter(pk__in=list(ids), started_at__isnull=False).values_list(
                "id", "started_at"
            )
        )
        if len(rows) == len(ids):
            break
        time.sleep(0.05)
    started = {ids[str(pk)]: at.timestamp() for pk, at in rows if at is not None}
    return _latencies(sent, started, args.n)


# --- C: Celery ------------------------------------------------------------------


def c_stage(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import noop, sleep, stamp

    for start in range(0, args.n, BATCH):
        if args.urgent_after is not None and start == args.urgent_after:
            # Kombu's Redis transport serves priority 0 first (its own list).
            stamp.apply_async(args=("urgent",), priority=0)
        with noop.app.producer_or_acquire() as producer:
            for _ in range(min(BATCH, args.n - start)):
                # Priority 5 lands in kombu's 3-6 list, like B's normal band.
                if args.kind == "noop":
                    noop.apply_async(producer=producer, priority=5)
                else:
                    sleep.apply_async(args=(args.sleep_ms,), producer=producer, priority=5)
    return {"staged": args.n}


def c_submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    from celery import group

    from bench.celery_app import noop

    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, args.n, BATCH):
        group(noop.s() for _ in range(min(BATCH, args.n - start))).apply_async()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def c_submit_single(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import noop

    noop.delay()
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        noop.delay()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": args.n, "seconds": elapsed, "rate": args.n / elapsed, "client_cpu_seconds": cpu}


def c_latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import REDIS_URL, stamp

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(STAMPS_KEY)
    sent: dict[str, float] = {}

    def send(i: int) -> None:
        sent[str(i)] = time.time()
        stamp.delay(str(i))

    _paced(args.n, args.gap_ms, send)
    for i in range(args.idle_samples):
        time.sleep(2.0)
        send(args.n + i)
    stamps = _wait_stamps(client, len(sent))
    return _latencies(sent, stamps, args.n)


ACTIONS: dict[tuple[str, str], Callable[[argparse.Namespace], dict[str, Any]]] = {
    ("a", "stage"): a_stage,
    ("a", "submit-bulk"): a_submit_bulk,
    ("a", "submit-single"): a_submit_single,
    ("a", "latency"): a_latency,
    ("b", "setup"): b_setup,
    ("b", "stage"): b_stage,
    ("b", "submit-bulk"): b_submit_bulk,
    ("b", "submit-single"): b_submit_single,
    ("b", "latency"): b_latency,
    ("c", "stage"): c_stage,
    ("c", "submit-bulk"): c_submit_bulk,
    ("c", "submit-single"): c_submit_single,
    ("c", "latency"): c_latency,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system", choices=["a", "b", "c"])
    parser.add_argument("action")
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--kind", choices=["noop", "sleep"], default="noop")
    parser.add_argument("--sleep-ms", type=int, default=10)
    parser.add_argument("--urgent-after", type=int, default=None)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--idle-samples", type=int, default=3)
    args = parser.parse_args(argv)
    action = ACTIONS.get((args.system, args.action))
    if action is None:
        parser.error(f"system {args.system!r} has no action {args.action!r}")
    _emit(action(args))


if __name__ == "__main__":
    main()
