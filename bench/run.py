"""``make bench``: this system (B) against raw Dramatiq (A) and Celery (C) on one machine.

Runs in the bench environment (``.venv-bench``). Rounds are interleaved
(A B C A B C …) on the same Redis database (flushed between phases) and the
same Postgres database; every figure is the median of the rounds, with the
minimum and maximum. See the README section "Benchmark" for what each row means.

    .venv-bench/bin/python bench/run.py [--rounds 3] [--scale 1.0] [--systems abc]
    .venv-bench/bin/python bench/run.py --profile     # py-spy profiles of B only
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"
BIN = Path(sys.executable).parent
PY = str(Path(sys.executable))

STAGE = "bstage"  # namespace (A, B) or queue (C) the workload is staged in before release
NAMES = {"a": "raw Dramatiq", "b": "toolboxai jobs", "c": "Celery + django-db"}
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


@dataclass
class Config:
    rounds: int
    scale: float
    systems: str
    redis_url: str
    database_url: str
    http: bool
    readme: bool
    threads: int = 8
    processes: int = 2

    def n(self, full: int) -> int:
        return max(10, int(full * self.scale))

    @property
    def noop_jobs(self) -> int:
        return self.n(20_000)

    @property
    def sleep_jobs(self) -> int:
        return self.n(5_000)

    @property
    def backlog(self) -> int:
        return self.n(10_000)

    @property
    def bulk_jobs(self) -> int:
        return self.n(10_000)

    @property
    def single_jobs(self) -> int:
        return self.n(2_000)

    @property
    def http_single(self) -> int:
        return self.n(2_000)

    @property
    def latency_jobs(self) -> int:
        return max(20, int(200 * min(1.0, self.scale * 2)))


# --- progress ---------------------------------------------------------------------


class Progress:
    """One line that says where the run is (rewritten in place on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.began = time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.began
        line = f"[{self.done:>3}/{self.total}] {elapsed:6.0f}s  {text}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:150])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def note(self, text: str) -> None:
        sys.stderr.write(("\r\033[K" if self.tty else "") + text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# --- services ---------------------------------------------------------------------


class Services:
    """The shared Redis database and Postgres database of the bench."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.redis = redis.Redis.from_url(cfg.redis_url)
        parts = urlsplit(cfg.database_url)
        self.dbname = parts.path.lstrip("/")
        self.conninfo = (
            f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432} "
            f"user={parts.username or 'postgres'} password={parts.password or ''}"
        )
        self._pg: psycopg.Connection[Any] | None = None

    def ensure_database(self) -> None:
        with psycopg.connect(self.conninfo, dbname="postgres", autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')

    @property
    def pg(self) -> psycopg.Connection[Any]:
        if self._pg is None or self._pg.closed:
            self._pg = psycopg.connect(self.conninfo, dbname=self.dbname, autocommit=True)
        return self._pg

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.pg.execute(sql, params).fetchone()
        return row[0] if row else None

    def reset(self) -> None:
        """Empty the Redis database and the job tables (the bench organization stays)."""
        self.redis.flushdb()
        tables = [
            t
            for t in ("jobs_job", "jobs_joboutbox", "django_celery_results_taskresult")
            if self.scalar("SELECT to_regclass(%s)", [t]) is not None
        ]
        if tables:
            self.pg.execute(f"TRUNCATE {', '.join(tables)} CASCADE")

    def server_versions(self) -> dict[str, str]:
        info = self.redis.info("server")
        return {
            "redis": str(info.get("redis_version")),
            "postgres": str(self.scalar("SHOW server_version")),
        }


#: A per-run secret: production settings refuse to start with the default key.
BENCH_SECRET_KEY = secrets.token_urlsafe(40)


def child_env(cfg: Config, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": cfg.database_url,
        "REDIS_URL": cfg.redis_url,
        "DJANGO_DEBUG": "0",
        # Production settings, as deployed, minus HTTPS: the bench speaks plain HTTP on loopback.
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or BENCH_SECRET_KEY,
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


def client(cfg: Config, system: str, action: str, *args: str, **env: str) -> dict[str, Any]:
    """Run ``python -m bench.client`` and return the JSON it printed last."""
    proc = subprocess.run(
        [PY, "-m", "bench.client", system, action, *args],
        cwd=ROOT,
        env=child_env(cfg, **env),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench client {system} {action} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1]))


def migrate(cfg: Config) -> None:
    for cmd in (
        [PY, "manage.py", "migrate", "--noinput"],
        [PY, "-m", "django", "migrate", "--noinput", "--settings=bench.celery_settings"],
    ):
        subprocess.run(
            cmd, cwd=ROOT, env=child_env(cfg), check=True, capture_output=True, timeout=300
        )


# --- workers ----------------------------------------------------------------------

READY = {
    "a": ("Worker process is ready for action.", 2),
    "b": ("Worker process is ready for action.", 2),
    "c": (" ready.", 1),
}


@dataclass
class Workers:
    system: str
    proc: subprocess.Popen[bytes]
    log: Path
    began: float = field(default_factory=time.monotonic)


def worker_command(cfg: Config, system: str) -> list[str]:
    p, t = str(cfg.processes), str(cfg.threads)
    if system == "a":
        return [str(BIN / "dramatiq"), "bench.raw_dramatiq", "-p", p, "-t", t]
    if system == "b":
        return [PY, "manage.py", "rundramatiq", "-p", p, "-t", t]
    # Celery: one prefork pool of processes x threads children.
    return [
        str(BIN / "celery"),
        "-A",
        "bench.celery_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        "8",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def start_workers(cfg: Config, system: str, tag: str) -> Workers:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{tag}-{system}-workers.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_command(cfg, system),
            cwd=ROOT,
            env=child_env(cfg),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers = Workers(system, proc, log)
    marker, count = READY[system]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{NAMES[system]} workers exited early; see {log}")
        if log.read_text(errors="replace").count(marker) >= count:
            return workers
        time.sleep(0.05)
    stop_workers(workers)
    raise RuntimeError(f"{NAMES[system]} workers were not ready within 120 s; see {log}")


def stop_workers(workers: Workers) -> None:
    proc = workers.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of our own process group


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) summed over a process and all its descendants, in MiB."""
    total_kb = 0
    for member in process_tree(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --- staged throughput ------------------------------------------------------------


def release(r: redis.Redis, system: str) -> list[bytes]:
    """Move the staged workload into the live queues in one transaction; returns live keys."""
    if system == "c":
        src, dst, pattern = STAGE.encode(), b"celery", STAGE + "*"
    else:
        src, dst, pattern = f"{STAGE}:".encode(), b"dramatiq:", f"{STAGE}:*"
    keys = []
    for key in r.scan_iter(match=pattern, count=1000):
        kind = r.type(key)
        if kind == b"list" or (kind == b"hash" and key.endswith(b".msgs")):
            keys.append(key)
    with r.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.rename(key, dst + key[len(src) :])
        if system == "b":
            # B's submissions publish a wake-up for each queue they fill, and its idle
            # consumers wait for one (polling only once a second as a safety net). The
            # release stands for those submissions, so it publishes their wake-ups.
            # A's consumers poll and C's block on BRPOP, as deployed; nothing to send.
            from jobs.transport.wakeups import publish_wakeups, wakeup_channel

            lists = [k[len(src) :].decode() for k in keys if not k.endswith(b".msgs")]
            publish_wakeups(pipe, wakeup_channel(dst.decode().rstrip(":"), r), lists)
        pipe.execute()
    return [dst + k[len(src) :] for k in keys if k.endswith(b".msgs")]


def run_staged(
    cfg: Config,
    services: Services,
    system: str,
    *,
    kind: str,
    n: int,
    urgent_after: int | None = None,
) -> dict[str, Any]:
    """Stage n jobs, release them to idle workers at once, and time them to the last one."""
    r = services.redis
    args = ["--kind", kind, "--n", str(n)]
    if urgent_after is not None:
        args += ["--urgent-after", str(urgent_after)]
    stage_env = {"JOBS_REDIS_NAMESPACE": STAGE, "BENCH_DRAMATIQ_NAMESPACE": STAGE}
    if system == "c":
        stage_env = {"BENCH_CELERY_QUEUE": STAGE}
    staged = client(cfg, system, "stage", *args, **stage_env)
    total = n + (1 if urgent_after is not None else 0)
    time.sleep(0.5)
    released = time.time()
    live = release(r, system)
    watch = live + [k.replace(b".msgs", b".DQ.msgs") for k in live]
    urgent_at: float | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if urgent_after is not None and urgent_at is None:
            urgent_at = _urgent_started(services, system, staged.get("urgent_id"))
        if system == "c":
            done = services.scalar("SELECT count(*) FROM django_celery_results_taskresult") >= total
        else:
            done = sum(r.hlen(k) for k in watch) == 0
        if done:
            break
        time.sleep(0.02)
    finished = time.time()
    if urgent_after is not None and urgent_at is None:
        urgent_at = _urgent_started(services, system, staged.get("urgent_id"))
    result: dict[str, Any] = {
        "n": total,
        "seconds": finished - released,
        "rate": total / (finished - released),
        "timed_out": finished - released > 590,
    }
    if system == "b":
        result["succeeded_rows"] = services.scalar(
            "SELECT count(*) FROM jobs_job WHERE status = 'succeeded'"
        )
    if system == "c":
        result["succeeded_rows"] = services.scalar(
            "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS'"
        )
    if urgent_after is not None:
        result["urgent_start_ms"] = None if urgent_at is None else (urgent_at - released) * 1000
        result["urgent_behind"] = urgent_after
    return result


def _urgent_started(services: Services, system: str, urgent_id: str | None) -> float | None:
    if system == "b":
        at = services.scalar("SELECT started_at FROM jobs_job WHERE id = %s", [urgent_id])
        return None if at is None else float(at.timestamp())
    for raw in services.redis.lrange("bench:stamps", 0, -1):
        tag, when = raw.decode().split(" ")
        if tag == "urgent":
            return float(when)
    return None


# --- HTTP (B only) ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def web_server(cfg: Config, tag: str) -> Iterator[int]:
    """The production web server: gunicorn's threaded WSGI workers (one per core; gunicorn.conf.py)."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{tag}-b-web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "toolboxai.wsgi:application",
                "--workers",
                str(os.cpu_count() or 2),
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=child_env(cfg),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {log}")
            try:
                http_call(port, "GET", "/healthz", None, None)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any,
    key: str | None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            c.close()


#: Untimed requests each HTTP client sends before the timed ones.
HTTP_WARMUP_REQUESTS = 25


def http_bench(cfg: Config, port: int, key: str) -> dict[str, Any]:
    job = {"type": "diagnostics.echo", "payload": {"message": "bench"}, "priority": 5}
    status, body = http_call(port, "POST", "/api/v1/jobs/", job, key)
    if status == 404:
        return {"available": False, "reason": "n/a (API not available)"}
    if status != 201:
        return {
            "available": False,
            "reason": f"POST /api/v1/jobs/ answered {status}: {body[:200]!r}",
        }
    out: dict[str, Any] = {"available": True}

    # Batch: 1,000 jobs per request, one client.
    batches = max(1, cfg.bulk_jobs // 1_000)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    statuses: Counter[int] = Counter()
    began = time.perf_counter()
    for _ in range(batches):
        status, _ = http_call(
            port, "POST", "/api/v1/jobs/batch/", {"jobs": [job] * 1_000}, key, conn
        )
        statuses[status] += 1
    elapsed = time.perf_counter() - began
    conn.close()
    ok = statuses.get(201, 0) * 1_000
    out["batch"] = {"n": ok, "seconds": elapsed, "rate": ok / elapsed, "statuses": dict(statuses)}

    # Single: 8 concurrent keep-alive clients. Each first sends WARMUP_REQUESTS untimed,
    # as the Python loops send one untimed job: the web threads open their Postgres and
    # Redis connections then, which a running server has done long before.
    total = cfg.http_single
    per_client = total // 8
    counts: list[Counter[int]] = [Counter() for _ in range(8)]
    warm = threading.Barrier(8 + 1)

    def run(i: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(HTTP_WARMUP_REQUESTS):
            with suppress(OSError, http.client.HTTPException):
                http_call(port, "POST", "/api/v1/jobs/", job, key, c)
        warm.wait()
        warm.wait()  # all clients start the timed part together
        for _ in range(per_client):
            try:
                st, _ = http_call(port, "POST", "/api/v1/jobs/", job, key, c)
            except (OSError, http.client.HTTPException):
                st = 0
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            counts[i][st] += 1
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    warm.wait()  # every client is warm
    began = time.perf_counter()
    warm.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    merged: Counter[int] = sum(counts, Counter())
    ok = merged.get(201, 0)
    out["single"] = {"n": ok, "seconds": elapsed, "rate": ok / elapsed, "statuses": dict(merged)}
    return out


# --- one round of one system ------------------------------------------------------


def run_system(
    cfg: Config, services: Services, system: str, rnd: int, progress: Progress, api_key: str
) -> dict[str, Any]:
    tag = f"r{rnd}"
    name = f"round {rnd}/{cfg.rounds} · {system.upper()} {NAMES[system]}"
    out: dict[str, Any] = {"system": system, "round": rnd, "load_before": os.getloadavg()[0]}

    services.reset()
    progress.step(f"{name}: bulk submission of {cfg.bulk_jobs:,} jobs")
    out["submit_bulk"] = client(cfg, system, "submit-bulk", "--n", str(cfg.bulk_jobs))
    services.reset()
    progress.step(f"{name}: single submission of {cfg.single_jobs:,} jobs")
    out["submit_single"] = client(cfg, system, "submit-single", "--n", str(cfg.single_jobs))
    services.reset()
    if system == "b" and cfg.http:
        progress.step(f"{name}: HTTP submission (gunicorn gthread workers)")
        with web_server(cfg, tag) as port:
            out["http"] = http_bench(cfg, port, api_key)
        services.reset()

    progress.step(f"{name}: starting {cfg.processes}x{cfg.threads} workers")
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


# --- summary ----------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    getter: Callable[[dict[str, Any]], float | None]
    higher_is_better: bool = True


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(run: dict[str, Any]) -> float | None:
        value: Any = run
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if value is None else float(value)

    return get


def _first_idle(run: dict[str, Any]) -> float | None:
    values = (run.get("latency") or {}).get("after_idle_ms") or []
    return statistics.median(values) if values else None


METRICS = [
    Metric("submit_bulk", "bulk submission", "jobs/s", _get("submit_bulk", "rate")),
    Metric("http_batch", "bulk submission, HTTP batch", "jobs/s", _get("http", "batch", "rate")),
    Metric(
        "submit_single", "single submission, Python loop", "jobs/s", _get("submit_single", "rate")
    ),
    Metric(
        "http_single", "single submission, HTTP x8 clients", "req/s", _get("http", "single", "rate")
    ),
    Metric("noop", "processing, 20k no-op", "jobs/s", _get("noop", "rate")),
    Metric("sleep", "processing, 5k x 10 ms sleep", "jobs/s", _get("sleep", "rate")),
    Metric("lat_p50", "enqueue→start p50 (idle)", "ms", _get("latency", "p50_ms"), False),
    Metric("lat_p99", "enqueue→start p99 (idle)", "ms", _get("latency", "p99_ms"), False),
    Metric("lat_idle", "first job after 2 s idle", "ms", _first_idle, False),
    Metric("urgent", "urgent job behind 10k backlog", "ms", _get("noop", "urgent_start_ms"), False),
    Metric("rss", "workers' peak RSS (sum)", "MiB", _get("peak_rss_mb"), False),
]


def summarise(runs: list[dict[str, Any]], systems: str) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        row: dict[str, Any] = {}
        for system in systems:
            values = [
                v for r in runs if r["system"] == system if (v := metric.getter(r)) is not None
            ]
            if values:
                row[system] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
        summary[metric.key] = row
    return summary


def _median(summary: dict[str, dict[str, Any]], key: str, system: str) -> float | None:
    cell = summary.get(key, {}).get(system)
    return None if cell is None else float(cell["median"])


def targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each met, missed, or not measured."""
    m = lambda key, s: _median(summary, key, s)  # noqa: E731
    rows: list[tuple[str, float | None, str, Callable[[float], bool]]] = []

    def ratio(key: str, a: str, b: str) -> float | None:
        x, y = m(key, a), m(key, b)
        return None if x is None or y is None or y == 0 else x / y

    rows.append(
        ("no-op throughput ≥ 0.5x raw Dramatiq", ratio("noop", "b", "a"), "x", lambda v: v >= 0.5)
    )
    rows.append(
        ("no-op throughput ≥ 3x Celery + django-db", ratio("noop", "b", "c"), "x", lambda v: v >= 3)
    )
    rows.append(
        (
            "10 ms-sleep throughput ≥ 0.9x raw Dramatiq",
            ratio("sleep", "b", "a"),
            "x",
            lambda v: v >= 0.9,
        )
    )
    rows.append(
        (
            "bulk submission ≥ 10,000 jobs/s (ledger rows written)",
            m("submit_bulk", "b"),
            "jobs/s",
            lambda v: v >= 10_000,
        )
    )
    rows.append(
        ("HTTP single submission ≥ 500 req/s", m("http_single", "b"), "req/s", lambda v: v >= 500)
    )
    a_p50, a_p99 = m("lat_p50", "a"), m("lat_p99", "a")
    rows.append(
        (
            "latency p50 ≤ 5 ms, better than raw Dramatiq",
            m("lat_p50", "b"),
            "ms",
            lambda v: v <= 5 and (a_p50 is None or v < a_p50),
        )
    )
    rows.append(
        (
            "latency p99 ≤ 25 ms, better than raw Dramatiq",
            m("lat_p99", "b"),
            "ms",
            lambda v: v <= 25 and (a_p99 is None or v < a_p99),
        )
    )
    rows.append(
        ("urgent job behind 10,000 starts within 1 s", m("urgent", "b"), "ms", lambda v: v <= 1_000)
    )
    return [
        {
            "target": label,
            "value": value,
            "unit": unit,
            "verdict": "not measured" if value is None else ("met" if check(value) else "missed"),
        }
        for label, value, unit, check in rows
    ]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(result: dict[str, Any]) -> str:
    summary, systems = result["summary"], result["config"]["systems"]
    http_reasons = [r["http"]["reason"] for r in result["runs"] if r.get("http", {}).get("reason")]
    http_reason = http_reasons[0] if http_reasons else "n/a (not run)"
    head = ["metric", "unit"] + [f"{s.upper()}: {NAMES[s]}" for s in systems]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        row = summary.get(metric.key, {})
        if not row and not (metric.key.startswith("http") and "b" in systems):
            continue
        cells = [metric.label, metric.unit]
        base = row.get("a", {}).get("median")
        for s in systems:
            cell = row.get(s)
            if cell is None:
                reason = http_reason if metric.key.startswith("http") and s == "b" else "-"
                cells.append(reason)
                continue
            text = f"{_fmt(cell['median'])} [{_fmt(cell['min'])}-{_fmt(cell['max'])}]"
            if s != "a" and base:
                text += f" ({cell['median'] / base:.2f}x)"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| target | B | verdict |")
    lines.append("|---|---|---|")
    for t in result["targets"]:
        value = _fmt(t["value"], t["unit"])
        unit = "" if t["unit"] == "x" or t["value"] is None else " " + t["unit"]
        lines.append(f"| {t['target']} | {value}{unit} | **{t['verdict']}** |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "dramatiq",
        "celery",
        "kombu",
        "django-celery-results",
        "Django",
        "redis",
        "hiredis",
        "psycopg",
        "gunicorn",
        "uvicorn",
    ):
        with suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def machine_line(result: dict[str, Any]) -> str:
    mc = result["machine"]
    pk = mc["packages"]
    loads = [r["load_before"] for r in result["runs"]]
    return (
        f"{mc['cores']} cores ({mc['cpu']}), {mc['memory_gib']} GiB, Linux {mc['kernel']}, "
        f"Python {mc['python']}, Redis {mc['services']['redis']}, Postgres {mc['services']['postgres']}; "
        f"Dramatiq {pk.get('dramatiq')}, Celery {pk.get('celery')}, "
        f"django-celery-results {pk.get('django-celery-results')}. "
        f"Load average before each run: {min(loads):.1f}-{max(loads):.1f} "
        f"(other work on the machine makes the figures noisy)."
    )


def update_readme(result: dict[str, Any]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    cfg = result["config"]
    block = "\n".join(
        [
            README_START,
            f"Latest run: {result['finished_at']}, {cfg['rounds']} interleaved rounds, "
            f"scale {cfg['scale']} (medians [min-max]; ratios to raw Dramatiq). "
            f"Full figures: `bench/results/latest.json`.",
            "",
            f"Machine: {machine_line(result)}",
            "",
            render_table(result),
            README_END,
        ]
    )
    before = text.split(README_START, 1)[0]
    after = text.split(README_END, 1)[1]
    readme.write_text(before + block + after)


# --- main -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_SCALE", "1.0")),
        help="multiply every job count (0.1 for a quick try)",
    )
    parser.add_argument(
        "--systems",
        default=os.environ.get("BENCH_SYSTEMS", "abc"),
        help="subset of abc, in round order",
    )
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurements")
    parser.add_argument(
        "--no-readme", action="store_true", help="do not rewrite the README's table"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile B with py-spy instead (bench/profile.py)"
    )
    ns = parser.parse_args(argv)
    cfg = Config(
        rounds=ns.rounds,
        scale=ns.scale,
        systems="".join(s for s in ns.systems.lower() if s in "abc"),
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        database_url=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_bench"
        ),
        http=not ns.no_http,
        readme=not ns.no_readme and ns.scale == 1.0 and ns.systems.lower() == "abc",
    )
    services = Services(cfg)
    services.ensure_database()
    migrate(cfg)
    services.reset()
    api_key = str(client(cfg, "b", "setup")["api_key"])
    if ns.profile:
        from bench.profile import profile_b

        profile_b(cfg, services, api_key)
        return 0

    steps = sum(7 if s == "b" and cfg.http else 6 for s in cfg.systems)
    progress = Progress(total=cfg.rounds * steps)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    runs = []
    for rnd in range(1, cfg.rounds + 1):
        for system in cfg.systems:
            runs.append(run_system(cfg, services, system, rnd, progress, api_key))
    progress.close()
    summary = summarise(runs, cfg.systems)
    result: dict[str, Any] = {
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "rounds": cfg.rounds,
            "scale": cfg.scale,
            "systems": cfg.systems,
            "processes": cfg.processes,
            "threads": cfg.threads,
            "noop_jobs": cfg.noop_jobs,
            "sleep_jobs": cfg.sleep_jobs,
            "backlog": cfg.backlog,
            "bulk_jobs": cfg.bulk_jobs,
            "single_jobs": cfg.single_jobs,
            "http_single": cfg.http_single,
            "latency_jobs": cfg.latency_jobs,
        },
        "machine": {**machine(), "services": services.server_versions()},
        "runs": runs,
        "summary": summary,
    }
    result["targets"] = targets(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", result["finished_at"])[:15]
    text = json.dumps(result, indent=2, default=str)
    (RESULTS / f"run-{stamp}.json").write_text(text)
    shutil.copyfile(RESULTS / f"run-{stamp}.json", RESULTS / "latest.json")
    table = render_table(result)
    (RESULTS / "latest.md").write_text(f"Machine: {machine_line(result)}\n\n{table}\n")
    if cfg.readme:
        update_readme(result)
    print()
    print(f"Machine: {machine_line(result)}")
    print()
    print(table)
    print(f"\nResults: {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
