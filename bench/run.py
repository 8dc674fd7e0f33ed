"""``make bench``: this system (B) against raw Dramatiq (A), Celery (C) and Huey (D).

Runs in the bench environment (``.venv-bench``). Each latency section (loopback, and
an added round trip through ``bench.proxy``) runs rounds interleaved
(A B C D floors, A B C D floors, …) on the same Redis database (flushed between
phases) and the same Postgres database; every figure is the median of the rounds,
with the minimum and maximum. ``bench/README.md`` says what each row measures.

    python -m bench.run [--rounds 3] [--scale 1.0] [--systems abcd] [--latency loopback,0.5ms]
    python -m bench.run --profile     # py-spy profiles of B only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench import floors, retention
from bench.config import NAMES, SYSTEMS, Config, Progress
from bench.growth import STEPS_PER_ROUND, Growth
from bench.growth import summarise as summarise_growth
from bench.http_bench import http_bench, web_server
from bench.links import Latency, Links, parse_latencies, proxy_overhead, round_trips
from bench.metrics import summarise, targets
from bench.report import machine, write
from bench.services import Services, client, migrate, run_json
from bench.staged import run_staged
from bench.streams import run_streams
from bench.workers import peak_rss_mb, process_tree, start_workers, stop_workers


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_system(
    cfg: Config, services: Services, system: str, rnd: int, progress: Progress, api_key: str
) -> dict[str, Any]:
    """One round of one system: submission, then its workers' latency and throughput."""
    tag = f"{cfg.latency}-r{rnd}"
    name = f"{cfg.latency} · round {rnd}/{cfg.rounds} · {system.upper()} {NAMES[system]}"
    out: dict[str, Any] = {"system": system, "round": rnd, "load_before": os.getloadavg()[0]}

    services.reset()
    progress.step(f"{name}: bulk submission of {cfg.bulk_jobs:,} jobs")
    out["submit_bulk"] = client(cfg, system, "submit-bulk", "--n", str(cfg.bulk_jobs))
    services.reset()
    progress.step(f"{name}: single submission of {cfg.single_jobs:,} jobs")
    out["submit_single"] = client(cfg, system, "submit-single", "--n", str(cfg.single_jobs))
    services.reset()
    if system == "b" and cfg.http:
        progress.step(f"{name}: HTTP submission and /healthz (gunicorn gthread workers)")
        with web_server(cfg, tag) as port:
            out["http"] = http_bench(cfg, port, api_key)
        services.reset()

    progress.step(f"{name}: starting its workers")
    workers = start_workers(cfg, system, tag)
    try:
        out["worker_boot_seconds"] = time.monotonic() - workers.began
        time.sleep(1.5)  # let every consumer settle into its idle polling
        progress.step(f"{name}: enqueue→start latency ({cfg.latency_jobs} jobs, then 2 s idle)")
        out["latency"] = client(cfg, system, "latency", "--n", str(cfg.latency_jobs))
        services.redis.delete("bench:stamps")
        progress.step(
            f"{name}: {cfg.noop_jobs:,} no-op jobs, one urgent job behind {cfg.backlog:,}"
        )
        out["noop"] = run_staged(
            cfg, services, system, kind="noop", n=cfg.noop_jobs, urgent_after=cfg.backlog
        )
        services.reset()
        progress.step(f"{name}: {cfg.sleep_jobs:,} jobs sleeping 10 ms")
        out["sleep"] = run_staged(cfg, services, system, kind="sleep", n=cfg.sleep_jobs)
        out["peak_rss_mb"] = peak_rss_mb(workers.proc.pid)
        out["worker_processes"] = len(process_tree(workers.proc.pid))
    finally:
        stop_workers(workers)
    services.reset()
    return out


def run_floors(cfg: Config, services: Services, rnd: int, progress: Progress) -> dict[str, Any]:
    progress.step(
        f"{cfg.latency} · round {rnd}/{cfg.rounds} · floors ({cfg.floor_rows:,} rows each)"
    )
    services.reset()
    out: dict[str, Any] = {"system": "f", "round": rnd, "load_before": os.getloadavg()[0]}
    out["floors"] = run_json(cfg, ["-m", "bench.floors", "--n", str(cfg.floor_rows)])
    services.reset()
    return out


def steps_per_section(cfg: Config) -> int:
    per_round = sum(7 if s == "b" and cfg.http else 6 for s in cfg.systems) + 1
    extra = retention.STEPS if cfg.retention_jobs and "b" in cfg.systems else 0
    return cfg.rounds * per_round + 1 + extra


def run_section(
    base: Config,
    services: Services,
    latency: Latency,
    progress: Progress,
    api_key: str,
    growth: Growth | None = None,
) -> dict[str, Any]:
    """Every round of every system over one setting of the links."""
    links = Links(base, latency)
    cfg = links.cfg
    section: dict[str, Any] = {
        "latency": latency.name,
        "delay_us": latency.delay_us,
        "started_at": now(),
        "load_before": list(os.getloadavg()),
        "redis_url": cfg.child_redis_url,
        "database_url": cfg.child_database_url,
    }
    runs: list[dict[str, Any]] = []
    growth_runs: list[dict[str, Any]] = []
    try:
        progress.step(f"{latency.name}: round trips of the links")
        section["rtt"] = {
            **round_trips(cfg.child_database_url, cfg.child_redis_url),
            "samples": 200,
        }
        for rnd in range(1, cfg.rounds + 1):
            for system in cfg.systems:
                cpu, began = links.proxy_cpu(), time.monotonic()
                run = run_system(cfg, services, system, rnd, progress, api_key)
                if links.proxies:
                    run["proxy_cpu_share"] = (links.proxy_cpu() - cpu) / (time.monotonic() - began)
                runs.append(run)
            runs.append(run_floors(cfg, services, rnd, progress))
            if growth is not None:
                growth_runs.append(growth.run_round(cfg, rnd, progress))
        if cfg.retention_jobs and "b" in cfg.systems:
            section["retention"] = retention.run_retention(cfg, services, progress)
    finally:
        links.stop()
    section["finished_at"] = now()
    section["runs"] = runs
    section["summary"] = summarise(runs, cfg.systems)
    section["targets"] = targets(section["summary"])
    if growth is not None:
        section["growth_runs"] = growth_runs
        section["growth"] = summarise_growth(growth_runs, section["summary"])
        section["targets"] += section["growth"]["targets"]
    if "retention" in section:
        section["targets"].append(retention.target(section["retention"]))
    reasons = [r["http"]["reason"] for r in runs if r.get("http", {}).get("reason")]
    section["http_reason"] = reasons[0] if reasons else None
    if links.proxies:
        section["proxy_cpu"] = {
            s: statistics.median(v)
            for s in cfg.systems
            if (v := [r["proxy_cpu_share"] for r in runs if r["system"] == s])
        }
    return section


def prepare(cfg: Config, services: Services) -> str:
    """Database, migrations, the bench organization and its API key, the floor's tables."""
    services.ensure_database()
    migrate(cfg)
    services.reset()
    api_key = str(client(cfg, "b", "setup")["api_key"])
    client(cfg, "b", "submit-single", "--n", "1")  # a row of B's for the floor to copy
    floors.prepare_tables(services)
    services.reset()
    return api_key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    env = os.environ.get
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "3")))
    parser.add_argument(
        "--scale",
        type=float,
        default=float(env("BENCH_SCALE", "1.0")),
        help="multiply every job count (0.1 for a quick try)",
    )
    parser.add_argument(
        "--systems", default=env("BENCH_SYSTEMS", SYSTEMS), help="subset of abcd, in round order"
    )
    parser.add_argument(
        "--latency",
        default=env("BENCH_LATENCY", "loopback,0.5ms"),
        help="sections: loopback and/or an added round trip such as 0.5ms (default both)",
    )
    parser.add_argument(
        "--huey-workers", type=int, default=16, help="Huey's process workers (default 16)"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    parser.add_argument(
        "--no-streams",
        action="store_true",
        help="skip the 1,000 concurrent streams row (bench/streams.py)",
    )
    parser.add_argument(
        "--retention-rows",
        type=int,
        default=1_000_000,
        help="expired jobs the retention row pre-fills and cleans up (x --scale; default 1,000,000)",
    )
    parser.add_argument(
        "--no-retention", action="store_true", help="skip the retention row (bench/retention.py)"
    )
    parser.add_argument(
        "--no-docs",
        "--no-readme",
        action="store_true",
        help="do not rewrite docs/performance.md (only a full-size run of all systems does)",
    )
    parser.add_argument(
        "--ledger-rows",
        type=int,
        default=int(env("BENCH_LEDGER_ROWS", "5000000")),
        help="finished jobs in the growth rows' ledger (bench/growth.py; default 5,000,000)",
    )
    parser.add_argument(
        "--no-growth", action="store_true", help="skip B's rows on the pre-filled ledger"
    )
    parser.add_argument("--refill", action="store_true", help="load the growth rows' ledger again")
    parser.add_argument(
        "--profile", action="store_true", help="profile B with py-spy instead (bench/profile.py)"
    )
    ns = parser.parse_args(argv)
    systems = "".join(s for s in ns.systems.lower() if s in SYSTEMS)
    latencies = parse_latencies(ns.latency)
    cfg = Config(
        rounds=ns.rounds,
        scale=ns.scale,
        systems=systems,
        redis_url=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8"),
        database_url=env("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_bench"),
        http=not ns.no_http,
        docs=not ns.no_docs and ns.scale == 1.0 and systems == SYSTEMS,
        huey_workers=ns.huey_workers,
        retention_rows=0 if ns.no_retention else ns.retention_rows,
    )
    services = Services(cfg)
    api_key = prepare(cfg, services)
    if ns.profile:
        from bench.profile import profile_b

        profile_b(cfg, services, api_key)
        return 0

    result: dict[str, Any] = {
        "started_at": now(),
        "config": {
            "rounds": cfg.rounds,
            "scale": cfg.scale,
            "systems": cfg.systems,
            "latencies": [lat.name for lat in latencies],
            **cfg.sizes(),
        },
        "machine": {**machine(), "services": services.server_versions()},
    }
    proxied = [lat for lat in latencies if lat.proxied]
    if proxied:
        result["proxy_overhead"] = proxy_overhead(cfg, proxied[0].delay_us)
    growth = None
    if not ns.no_growth and "b" in cfg.systems:
        growth = Growth(cfg, ns.ledger_rows, refill=ns.refill)
    steps = steps_per_section(cfg) + (cfg.rounds * STEPS_PER_ROUND if growth else 0)
    progress = Progress(total=len(latencies) * steps)
    if growth is not None:
        result["growth"] = growth.prepare(progress)
    result["sections"] = [
        run_section(cfg, services, latency, progress, api_key, growth) for latency in latencies
    ]
    progress.close()
    if not ns.no_streams:
        print("1,000 concurrent streams on one events-service process (bench/streams.py)")
        result["streams"] = run_streams(streams=1000)
    result["finished_at"] = now()
    text = write(result, docs=cfg.docs)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
