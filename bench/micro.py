"""Micro-benchmarks of B's hot paths: CPU and round trips per operation, not rates.

On a shared machine a rate says more about the neighbours than about the code;
the CPU an operation costs its own process, and the round trips it waits for,
do not. ``python -m bench.micro <what> --latency loopback|0.5ms`` prints one JSON
line per measurement:

- ``submit``: ``job_submit`` in a Python loop, outside a transaction (as the API
  calls it) and inside the caller's ``transaction.atomic()``; wall and process
  CPU per submission, and the Postgres and Redis round trips per submission
  (counted by ``bench.proxy``: with an added latency only);
- ``worker``: ``manage.py rundramatiq -p 2 -t 8`` running staged no-op jobs: CPU
  per job of the workers, their Postgres backends and Redis, and round trips per job;
- ``rss``: the resident memory of an idle worker (2 processes x 8 threads).

Each line carries the median ``SELECT 1`` and ``PING`` round trips of the same
links, measured just before. The links are ``--database-url`` / ``--redis-url``
(default ``BENCH_DATABASE_URL`` / ``BENCH_REDIS_URL``, as for ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.config import Config, child_env
from bench.links import Latency, ProxyProcess, _target, _with_port, parse_latencies
from bench.services import Services
from bench.workers import cpu_seconds, process_tree

RTT_SAMPLES = 200


class _Links:
    """Direct links on loopback; else a delaying proxy in front of Postgres and of Redis,
    which also counts the round trips (``turns``: zeros on loopback)."""

    def __init__(self, database_url: str, redis_url: str, latency: Latency) -> None:
        self.database_url, self.redis_url = database_url, redis_url
        self.pg: ProxyProcess | None = None
        self.redis: ProxyProcess | None = None
        if latency.proxied:
            self.pg = ProxyProcess(_target(database_url, 5432), latency.delay_us)
            self.redis = ProxyProcess(_target(redis_url, 6379), latency.delay_us)
            self.database_url = _with_port(database_url, self.pg.port)
            self.redis_url = _with_port(redis_url, self.redis.port)

    def turns(self) -> tuple[int, int]:
        if self.pg is None or self.redis is None:
            return 0, 0
        return self.pg.turns(), self.redis.turns()

    def stop(self) -> None:
        for proxy in (self.pg, self.redis):
            if proxy is not None:
                proxy.stop()


def _setup_django(cfg: Config) -> None:
    os.environ.update(child_env(cfg))
    os.environ["DJANGO_SETTINGS_MODULE"] = "toolboxai.settings"
    import django

    django.setup()


def _round_trips() -> dict[str, float]:
    from django.db import connection

    from jobs.transport.broker import get_broker

    client = get_broker().client
    pg, rd = [], []
    with connection.cursor() as cursor:
        for _ in range(RTT_SAMPLES):
            began = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            pg.append(time.perf_counter() - began)
    for _ in range(RTT_SAMPLES):
        began = time.perf_counter()
        client.ping()
        rd.append(time.perf_counter() - began)
    return {
        "select1_us": round(statistics.median(pg) * 1e6, 1),
        "ping_us": round(statistics.median(rd) * 1e6, 1),
    }


def _flush_outbox() -> None:
    """Wait for deletes left to a background thread, where the code has one."""
    try:
        from jobs.services.outbox import outbox_forget_flush
    except ImportError:
        return
    outbox_forget_flush()


def _org() -> Any:
    from tenants.models import Organization
    from tenants.services import organization_create

    org = Organization.objects.filter(slug="micro").first()
    if org is None:
        org = organization_create(slug="micro", name="Micro-benchmark", owner_username="micro")
    org.max_submissions_per_minute = 100_000_000
    org.max_concurrent_jobs = 1_000_000
    org.monthly_job_quota = 1_000_000_000  # counted, so the quota's path is measured too
    org.save()
    return org


def _measure(links: _Links, n: int, op: Callable[[], None]) -> dict[str, Any]:
    for _ in range(30):
        op()
    _flush_outbox()
    pg0, rd0 = links.turns()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        op()
    wall = time.perf_counter() - wall0
    _flush_outbox()
    cpu = time.process_time() - cpu0
    pg1, rd1 = links.turns()
    return {
        "n": n,
        "wall_us": round(wall / n * 1e6, 1),
        "cpu_us": round(cpu / n * 1e6, 1),
        "pg_round_trips": round((pg1 - pg0) / n, 2),
        "redis_round_trips": round((rd1 - rd0) / n, 2),
    }


def submit(cfg: Config, links: _Links, args: argparse.Namespace) -> list[dict[str, Any]]:
    _setup_django(cfg)
    from django.db import transaction

    from jobs.services import job_submit

    org = _org()
    rtt = _round_trips()

    def plain() -> None:
        job_submit(job_type="diagnostics.echo", payload={"message": "m"}, organization=org)

    def atomic() -> None:
        with transaction.atomic():
            job_submit(job_type="diagnostics.echo", payload={"message": "m"}, organization=org)

    out = []
    for name, op in (("submit", plain), ("submit in atomic", atomic)):
        row = {"op": name, **rtt, **_measure(links, args.n, op)}
        out.append(row)
    # The caller's path alone: outbox rows wait for the flush at the end (one DELETE).
    from django.test import override_settings

    with override_settings(JOBS_OUTBOX_DELETE_LINGER_MS=3_600_000):
        out.append({"op": "submit, caller's path", **rtt, **_measure(links, args.n, plain)})
    return out


def _group_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def worker(cfg: Config, links: _Links, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.config import STAGE
    from bench.services import client
    from bench.staged import release
    from bench.workers import start_workers, stop_workers

    services = Services(cfg)
    services.reset()
    direct = cfg
    proxied = _replace_links(cfg, links)
    client(direct, "b", "setup")
    client(direct, "b", "stage", "--kind", "noop", "--n", str(args.n), JOBS_REDIS_NAMESPACE=STAGE)
    workers = start_workers(proxied, "b", "micro")
    try:
        time.sleep(2.0)
        tree = process_tree(workers.proc.pid)
        backends = _backends(services)
        # Idle cost over 2 s, subtracted below in proportion.
        idle_turns0, idle0 = links.turns(), time.monotonic()
        time.sleep(2.0)
        idle_turns1, idle_s = links.turns(), time.monotonic() - idle0
        cpu_w0, cpu_pg0, cpu_r0 = _group_cpu(tree), _group_cpu(backends), _redis_cpu(services)
        turns0, began = links.turns(), time.monotonic()
        live = release(services.redis, "b")
        while sum(services.redis.hlen(k) for k in live) > 0:
            time.sleep(0.01)
        seconds = time.monotonic() - began
        turns1 = links.turns()
        # Backends opened during the run (the workers connect on their first job) count whole.
        cpu_w1, cpu_pg1, cpu_r1 = (
            _group_cpu(tree),
            _group_cpu(_backends(services)),
            _redis_cpu(services),
        )
    finally:
        stop_workers(workers)
    done = services.scalar("SELECT count(*) FROM jobs_job WHERE status = 'succeeded'")
    services.reset()
    scale = seconds / idle_s
    pg_idle = (idle_turns1[0] - idle_turns0[0]) * scale
    rd_idle = (idle_turns1[1] - idle_turns0[1]) * scale
    n = args.n
    return [
        {
            "op": "no-op job (2x8 workers)",
            "n": n,
            "succeeded": done,
            "jobs_per_s": round(n / seconds),
            "workers_cpu_us": round((cpu_w1 - cpu_w0) / n * 1e6, 1),
            "postgres_cpu_us": round((cpu_pg1 - cpu_pg0) / n * 1e6, 1),
            "redis_cpu_us": round((cpu_r1 - cpu_r0) / n * 1e6, 1),
            "pg_round_trips": round((turns1[0] - turns0[0] - pg_idle) / n, 3),
            "redis_round_trips": round((turns1[1] - turns0[1] - rd_idle) / n, 3),
        }
    ]


def _backends(services: Services) -> list[int]:
    """The Postgres backends of the bench database but the bench's own."""
    rows = services.pg.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [services.dbname],
    ).fetchall()
    return [r[0] for r in rows]


def _redis_cpu(services: Services) -> float:
    info = services.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def rss(cfg: Config, links: _Links, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.workers import start_workers, stop_workers

    workers = start_workers(_replace_links(cfg, links), "b", "micro-rss")
    try:
        time.sleep(3.0)
        tree = process_tree(workers.proc.pid)
        total_kb = 0
        modules: dict[str, bool] = {}
        for pid in tree:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
            with open(f"/proc/{pid}/maps") as maps:
                text = maps.read()
            for name in ("openai", "sendgrid", "pydantic_core"):
                modules[name] = modules.get(name, False) or f"/{name}/" in text
    finally:
        stop_workers(workers)
    return [
        {
            "op": "idle worker RSS (2x8, all processes)",
            "rss_mib": round(total_kb / 1024, 1),
            "native_libraries_mapped": modules,
        }
    ]


def _replace_links(cfg: Config, links: _Links) -> Config:
    import dataclasses

    return dataclasses.replace(
        cfg, child_database_url=links.database_url, child_redis_url=links.redis_url
    )


WHAT = {"submit": submit, "worker": worker, "rss": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("what", choices=sorted(WHAT))
    parser.add_argument("--latency", default="loopback", help="loopback, or a round trip: 0.5ms")
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--label", default="", help="a name for the code measured")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_bench"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
    )
    args = parser.parse_args(argv)
    latency = parse_latencies(args.latency)[0]
    cfg = Config(
        rounds=1,
        scale=1.0,
        systems="b",
        redis_url=args.redis_url,
        database_url=args.database_url,
        http=False,
        docs=False,
        latency=latency.name,
    )
    Services(cfg).ensure_database()
    links = _Links(args.database_url, args.redis_url, latency)
    try:
        cfg = _replace_links(cfg, links) if args.what == "submit" else cfg
        rows = WHAT[args.what](cfg, links, args)
    finally:
        links.stop()
    load = os.getloadavg()[0]
    for row in rows:
        row.update(latency=latency.name, label=args.label, load=round(load, 1))
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
