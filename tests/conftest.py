"""Shared fixtures: real Redis and Postgres (required, never skipped), and a real worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
import pytest
import redis
from django.conf import settings
from dramatiq.brokers.redis import RedisBroker
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from jobs.transport.broker import get_broker
from tests.servers import RedisServer

#: Local servers speaking the providers' protocols (OpenAI, SendGrid, SMTP, Roblox).
pytest_plugins = ["tests.fakes.fixtures"]

# Property tests run beside worker processes on a shared machine: generation may be slow
# there, which says nothing about the code under test.
hypothesis_settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("suite")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, with a fix, when Postgres or Redis is missing: those tests must not skip."""
    problems = []
    try:
        get_broker().client.ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {settings.REDIS_URL} is unreachable ({exc}).")
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        problems.append("DATABASE_URL must point at Postgres for the test suite.")
    else:
        try:
            psycopg.connect(
                host=db["HOST"],
                port=db["PORT"] or 5432,
                user=db["USER"],
                password=db["PASSWORD"],
                dbname="postgres",
                connect_timeout=3,
            ).close()
        except psycopg.Error as exc:
            problems.append(f"Postgres at {db['HOST']}:{db['PORT']} is unreachable ({exc}).")
    if problems:
        pytest.exit(
            "The test suite needs real services:\n  "
            + "\n  ".join(problems)
            + "\nStart them (docs/getting-started.md, 'Run the tests') or set DATABASE_URL / REDIS_URL.",
            returncode=3,
        )


@pytest.fixture
def broker() -> Iterator[RedisBroker]:
    """The project's RedisBroker on a dedicated, flushed Redis database."""
    b = get_broker()
    b.client.flushdb()
    yield b
    # Sent submissions' outbox rows are deleted by a background thread: finish it
    # (and close its connection) before the next test empties the tables.
    from jobs.services.outbox import outbox_forget_flush

    outbox_forget_flush()
    b.client.flushdb()


@pytest.fixture
def worker(broker: RedisBroker) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker (4 threads) in this process, stopped after the test."""
    w = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    w.start()
    yield w
    w.stop(timeout=10_000)


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """Poll a condition until it holds or a deadline passes (no bare sleeps in tests)."""

    def _wait(
        condition: Callable[[], Any],
        timeout: float = 15.0,
        interval: float = 0.05,
        describe: Callable[[], str] | None = None,
    ) -> Any:
        """``describe``, if given, says what the state was when the deadline passed."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                state = f"\n{describe()}" if describe is not None else ""
                raise AssertionError(f"condition not met within {timeout}s: {condition}{state}")
            time.sleep(interval)

    return _wait


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers (extra arguments go to redis-server); all are stopped after."""
    started: list[RedisServer] = []

    def _start(*args: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", args=args)
        started.append(server)
        server.wait_ready()
        return server

    yield _start
    for server in started:
        server.stop()
