"""The bench's Redis and Postgres (its own direct links), and its child processes' entry points."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis

from bench.config import PY, ROOT, Config, child_env

#: Tables the bench empties between phases (when they exist).
JOB_TABLES = ("jobs_job", "jobs_joboutbox", "django_celery_results_taskresult", "floor_job")


def conninfo(database_url: str) -> tuple[str, str]:
    """(libpq conninfo without the database, database name) of a postgres:// URL."""
    parts = urlsplit(database_url)
    info = (
        f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432} "
        f"user={parts.username or 'postgres'} password={parts.password or ''}"
    )
    return info, parts.path.lstrip("/")


class Services:
    """The shared Redis database and Postgres database of the bench, over direct links."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.redis = redis.Redis.from_url(cfg.redis_url)
        self.conninfo, self.dbname = conninfo(cfg.database_url)
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
        tables = [t for t in JOB_TABLES if self.scalar("SELECT to_regclass(%s)", [t]) is not None]
        if tables:
            self.pg.execute(f"TRUNCATE {', '.join(tables)} CASCADE")

    def server_versions(self) -> dict[str, str]:
        info = self.redis.info("server")
        return {
            "redis": str(info.get("redis_version")),
            "postgres": str(self.scalar("SHOW server_version")),
        }


def client(cfg: Config, system: str, action: str, *args: str, **env: str) -> dict[str, Any]:
    """Run ``python -m bench.client`` with the system's links; returns the JSON it printed last."""
    return run_json(cfg, ["-m", "bench.client", system, action, *args], **env)


def run_json(cfg: Config, argv: Sequence[str], **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [PY, *argv],
        cwd=ROOT,
        env=child_env(cfg, **env),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench child {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1]))


def migrate(cfg: Config, *, celery: bool = True) -> None:
    """B's migrations (and django-celery-results' unless ``celery`` is False)."""
    commands = [[PY, "manage.py", "migrate", "--noinput"]]
    if celery:
        commands.append(
            [PY, "-m", "django", "migrate", "--noinput", "--settings=bench.celery_settings"]
        )
    for cmd in commands:
        subprocess.run(
            cmd, cwd=ROOT, env=child_env(cfg), check=True, capture_output=True, timeout=300
        )
