"""Profiles B's hot paths with py-spy: bulk and single submission, and the worker.

``make bench-profile`` (or ``python -m bench.run --profile``) writes a text
summary per profile under ``bench/results/`` (``profile-*.txt``): the
functions that take the most samples, inclusive and by leaf, and the share of
samples by library. The raw collapsed stacks stay in ``bench/results/logs/``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.config import BIN, LOGS, PY, RESULTS, ROOT, STAGE, Config, child_env
from bench.services import Services, client
from bench.staged import release
from bench.workers import start_workers, stop_workers

_FRAME_FILE = (" (", ")")

#: Buckets by the file a leaf frame comes from, most specific first.
BUCKETS = (
    ("psycopg", "psycopg (Postgres driver)"),
    ("django/db/", "Django ORM / db backend"),
    ("rest_framework/", "DRF (payload serializers)"),
    ("redis/", "redis-py"),
    ("hiredis", "redis-py"),
    ("dramatiq/", "Dramatiq"),
    ("django_dramatiq/", "Dramatiq"),
    ("logging/", "logging"),
    ("pythonjsonlogger", "logging"),
    ("json/", "json"),
    ("jobs/", "toolboxai jobs (our code)"),
    ("tenants/", "toolboxai jobs (our code)"),
    ("prometheus", "metrics"),
    ("threading.py", "threads / waiting"),
    ("queue.py", "threads / waiting"),
    ("django/", "Django (other)"),
    ("uuid.py", "uuid"),
)


def _func_name(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (path/file.py)"
    if frame.endswith(")") and ":" in frame:
        return frame.rsplit(":", 1)[0] + ")"
    return frame


def _bucket(frame: str) -> str:
    for needle, name in BUCKETS:
        if needle in frame:
            return name
    return "other"


def summarise(raw: Path, title: str, focus: str | None = None, top: int = 30) -> str:
    """A text summary of py-spy's raw (collapsed-stack) output.

    ``focus`` keeps only stacks passing through a frame containing it (e.g. the
    timed function, leaving out interpreter start-up).
    """
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if focus is not None:
            index = next((i for i, f in enumerate(frames) if focus in f), None)
            if index is None:
                continue
            frames = frames[index:]
        count = int(count_text)
        total += count
        for name in {_func_name(f) for f in frames}:
            inclusive[name] += count
        leaf[_func_name(frames[-1])] += count
        buckets[_bucket(frames[-1])] += count
    if not total:
        return f"# {title}\n\nNo samples.\n"
    out = [
        f"# {title}",
        "",
        f"{total} samples (py-spy --idle: wall clock, waits on sockets included)",
        "",
    ]
    out.append("## Where the time goes, by library (leaf frame)")
    for name, count in buckets.most_common():
        out.append(f"{100 * count / total:5.1f}%  {name}")
    out += ["", f"## Top {top} functions, inclusive"]
    for name, count in inclusive.most_common(top):
        out.append(f"{100 * count / total:5.1f}%  {name}")
    out += ["", f"## Top {top} functions, self (leaf)"]
    for name, count in leaf.most_common(top):
        out.append(f"{100 * count / total:5.1f}%  {name}")
    return "\n".join(out) + "\n"


def _pyspy(cfg: Config) -> str:
    return str(BIN / "py-spy")


def profile_b(cfg: Config, services: Services, api_key: str) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    services.reset()
    for action, n, focus in (
        ("submit-bulk", cfg.bulk_jobs, "job_submit_many (jobs"),
        ("submit-single", cfg.single_jobs, "job_submit (jobs"),
    ):
        raw = LOGS / f"profile-{action}.raw"
        subprocess.run(
            [
                _pyspy(cfg),
                "record",
                "--idle",
                "--format",
                "raw",
                "--rate",
                "250",
                "-o",
                str(raw),
                "--",
                PY,
                "-m",
                "bench.client",
                "b",
                action,
                "--n",
                str(n),
            ],
            cwd=ROOT,
            env=child_env(cfg),
            check=True,
            capture_output=True,
            timeout=900,
        )
        text = summarise(raw, f"B {action} ({n:,} jobs), inside {focus}", focus=focus)
        (RESULTS / f"profile-{action}.txt").write_text(text)
        print(text)
        services.reset()

    workers = start_workers(cfg, "b", "profile")
    try:
        time.sleep(1.5)
        _stage(cfg, services)
        raw = LOGS / "profile-worker.raw"
        spy = subprocess.Popen(
            [
                _pyspy(cfg),
                "record",
                "--idle",
                "--format",
                "raw",
                "--rate",
                "250",
                "--subprocesses",
                "--pid",
                str(workers.proc.pid),
                "-o",
                str(raw),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        began = time.time()
        live = release(services.redis, "b")
        while sum(services.redis.hlen(k) for k in live) > 0:
            time.sleep(0.02)
        elapsed = time.time() - began
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    finally:
        stop_workers(workers)
    title = (
        f"B worker, {cfg.noop_jobs:,} no-op jobs on {cfg.processes}x{cfg.threads} "
        f"in {elapsed:.1f} s ({cfg.noop_jobs / elapsed:,.0f} jobs/s under py-spy)"
    )
    text = (
        summarise(
            raw, title + ", inside the worker threads' process_message", focus="process_message"
        )
        + "\n"
        + summarise(raw, title + ", consumer threads (fetch and ack)", focus="_ConsumerThread.run")
    )
    (RESULTS / "profile-worker.txt").write_text(text)
    print(text)
    services.reset()


def _stage(cfg: Config, services: Services) -> dict[str, Any]:
    return client(
        cfg,
        "b",
        "stage",
        "--kind",
        "noop",
        "--n",
        str(cfg.noop_jobs),
        JOBS_REDIS_NAMESPACE=STAGE,
    )
