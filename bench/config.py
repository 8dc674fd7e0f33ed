"""The bench's configuration, paths, progress line and child-process environment."""

from __future__ import annotations

import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"
BIN = Path(sys.executable).parent
PY = str(Path(sys.executable))

STAGE = "bstage"  # namespace (A, B), queue (C) or Huey name (D) the workload is staged in
SYSTEMS = "abcd"
NAMES = {
    "a": "raw Dramatiq",
    "b": "toolboxai jobs",
    "c": "Celery + django-db",
    "d": "Huey (Redis)",
}
PEERS = "acd"


@dataclass(frozen=True)
class Config:
    rounds: int
    scale: float
    systems: str
    #: The bench's own links (direct): resets, releases, completion polling.
    redis_url: str
    database_url: str
    http: bool
    docs: bool
    #: The links every system under test uses (its workers, clients and web server):
    #: the direct ones on loopback, a delaying proxy's in a latency section.
    child_redis_url: str = ""
    child_database_url: str = ""
    latency: str = "loopback"
    threads: int = 8
    processes: int = 2
    #: Huey's process workers are single-threaded: 16 processes give it the same 16
    #: concurrent jobs as 2 processes x 8 threads (bench/README.md, "The systems").
    huey_workers: int = 16
    #: Expired jobs the retention row pre-fills and cleans up (0: no retention row).
    retention_rows: int = 0

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
    def floor_rows(self) -> int:
        return self.n(2_000)

    @property
    def retention_jobs(self) -> int:
        return self.n(self.retention_rows) if self.retention_rows else 0

    @property
    def latency_jobs(self) -> int:
        return max(100, int(200 * min(1.0, self.scale * 2)))

    def sizes(self) -> dict[str, int]:
        return {
            "processes": self.processes,
            "threads": self.threads,
            "huey_workers": self.huey_workers,
            "noop_jobs": self.noop_jobs,
            "sleep_jobs": self.sleep_jobs,
            "backlog": self.backlog,
            "bulk_jobs": self.bulk_jobs,
            "single_jobs": self.single_jobs,
            "http_single": self.http_single,
            "floor_rows": self.floor_rows,
            "latency_jobs": self.latency_jobs,
            "retention_jobs": self.retention_jobs,
        }


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


#: A per-run secret: production settings refuse to start with the default key.
BENCH_SECRET_KEY = secrets.token_urlsafe(40)


def child_env(cfg: Config, **extra: str) -> dict[str, str]:
    """The environment of every process of a system under test (its links, production settings)."""
    env = {
        **os.environ,
        "DATABASE_URL": cfg.child_database_url or cfg.database_url,
        "REDIS_URL": cfg.child_redis_url or cfg.redis_url,
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
