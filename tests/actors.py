"""Job types used only by the test suite (registered because ``tests`` is an installed app)."""

from __future__ import annotations

import os
import time
from typing import Any

from redis import Redis

from jobs.errors import SoftTimeLimitExceeded
from jobs.registry import job_type
from jobs.runtime import current_job
from jobs.scheduler.registry import periodic
from jobs.transport.broker import get_broker
from tenants.context import get_organization_id


def side_effects() -> Redis:
    """A counter store outside the ledger, to check how often a job really ran."""
    return get_broker().client


@job_type("tests.count", queue="default", public=False, max_retries=0)
def count(*, key: str, sleep_seconds: float = 0) -> dict[str, Any]:
    """Increment a Redis counter once per run."""
    if sleep_seconds:
        time.sleep(sleep_seconds)
    runs = side_effects().incr(f"tests:runs:{key}")
    return {"runs": runs}


@job_type("tests.whoami", queue="tenant_ops", public=False, max_retries=0)
def whoami() -> dict[str, Any]:
    """Report the tenant context and job context the worker set."""
    job = current_job()
    return {
        "organization_id": get_organization_id(),
        "job_id": job.job_id if job else None,
        "attempt": job.attempt if job else None,
    }


@job_type(
    "tests.sleepy_cleanup",
    queue="default",
    public=False,
    max_retries=0,
    soft_time_limit_ms=300,
    time_limit_ms=10_000,
)
def sleepy_cleanup(*, catch: bool) -> dict[str, Any]:
    """Sleep past the soft limit; optionally catch it and clean up."""
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        if not catch:
            raise
        return {"cleaned_up": True}
    return {"cleaned_up": False}


@job_type("tests.big_result", queue="default", public=False, max_retries=2)
def big_result(*, size: int) -> dict[str, Any]:
    return {"blob": "x" * size}


@job_type("tests.progress", queue="default", public=False, max_retries=0)
def progress(*, steps: int, step_seconds: float, hold_key: str = "") -> dict[str, Any]:
    """Report progress each step; stops at the first step after a cancel.

    With ``hold_key``, the steps after the first wait for ``release(hold_key)``.
    """
    job = current_job()
    assert job is not None
    for step in range(steps):
        if hold_key and step:
            _wait_released(hold_key, limit_seconds=60)
        time.sleep(step_seconds)
        job.progress(int(100 * (step + 1) / steps), f"step {step + 1} of {steps}")
    return {"steps": steps}


# Fires every minute; the e2e test of `manage.py periodiq` counts its runs.
periodic(
    "tests.every_minute",
    job_type="tests.count",
    cron="* * * * *",
    payload={"key": "every-minute"},
    description="Test schedule: every minute.",
)


@job_type("tests.limited", queue="default", public=False, max_retries=0, rate_limit_per_minute=60)
def limited(*, n: int) -> dict[str, Any]:
    """A job type limited to 60 starts per minute across all workers."""
    return {"n": n}


@job_type("tests.drop_connection", queue="default", public=False, max_retries=0)
def drop_connection() -> dict[str, Any]:
    """Have Postgres terminate this worker thread's connection, as a failover would."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    return {"terminated": pid}


@job_type("tests.stream_text", queue="default", public=False, max_retries=0)
def stream_text(
    *, chunks: list[str], step_seconds: float = 0.1, hold_key: str = ""
) -> dict[str, Any]:
    """Publish each chunk as a partial result, reporting progress, then return them joined.

    With ``hold_key``, chunk ``n`` waits for ``release(f"{hold_key}:{n}")`` instead of
    ``step_seconds``: the test decides when each step happens.
    """
    job = current_job()
    assert job is not None
    for number, chunk in enumerate(chunks, start=1):
        if hold_key:
            _wait_released(f"{hold_key}:{number}", limit_seconds=60)
        else:
            time.sleep(step_seconds)
        job.publish_partial(chunk)
        job.progress(int(100 * number / len(chunks)), f"chunk {number}")
    return {"text": "".join(chunks)}


@job_type("tests.crash_worker", queue="default", public=False, max_retries=3)
def crash_worker() -> dict[str, Any]:
    """Kill the worker process running it (a poison pill); only where the test allows it."""
    import os
    import signal

    side_effects().incr("tests:crashes")
    if os.environ.get("TESTS_ALLOW_CRASH") != "1":
        raise RuntimeError(
            "tests.crash_worker only crashes workers started with TESTS_ALLOW_CRASH=1"
        )
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


_RECORD_ONCE = """
if redis.call("set", KEYS[1], "1", "NX") then
    redis.call("hincrby", KEYS[2], ARGV[1], 1)
end
redis.call("hincrby", KEYS[3], ARGV[1], 1)
"""


@job_type("tests.soak", queue="default", public=False, max_retries=3)
def soak(*, key: str, sleep_seconds: float = 0) -> dict[str, Any]:
    """Work briefly, then record its side effect idempotently (keyed by the job id).

    ``tests:soak:effects`` counts effects (once per job, whatever the number of
    runs); ``tests:soak:runs`` counts every run that got as far as recording.
    """
    job = current_job()
    assert job is not None
    if sleep_seconds:
        time.sleep(sleep_seconds)
    side_effects().eval(
        _RECORD_ONCE,
        3,
        f"tests:soak:done:{job.job_id}",
        "tests:soak:effects",
        "tests:soak:runs",
        key,
    )
    return {"key": key}


_chaos_effects: Redis | None = None


@job_type(
    "tests.chaos",
    queue="default",
    public=False,
    max_retries=20,
    min_backoff_ms=200,
    max_backoff_ms=2_000,
)
def chaos(*, key: str, sleep_seconds: float = 0) -> dict[str, Any]:
    """Work briefly, then count this run by job id in the chaos scenarios' side-effect store.

    The store (``CHAOS_EFFECTS_URL``) is a Redis no scenario faults, so a count of 2
    means the job's code really ran twice (``tests/chaos``).
    """
    global _chaos_effects
    job = current_job()
    assert job is not None
    if sleep_seconds:
        time.sleep(sleep_seconds)
    if _chaos_effects is None:
        _chaos_effects = Redis.from_url(os.environ["CHAOS_EFFECTS_URL"])
    _chaos_effects.hincrby("chaos:effects", job.job_id, 1)
    return {"key": key}


#: What tests.leak_memory keeps alive: a leak, on purpose, for the rest of the process.
_leaked: list[bytes] = []


@job_type("tests.leak_memory", queue="default", public=False, max_retries=0)
def leak_memory(*, mib: int) -> dict[str, Any]:
    """Keep ``mib`` MiB allocated (and touched) until the worker process exits."""
    _leaked.append(b"x" * (mib * 1024 * 1024))
    return {"leaked_mib": sum(len(chunk) for chunk in _leaked) // (1024 * 1024)}


@job_type("tests.hold", queue="default", public=False, max_retries=0)
def hold(*, key: str, limit_seconds: float = 60) -> dict[str, Any]:
    """Run until the test sets ``tests:release:<key>`` (or ``limit_seconds`` pass).

    For tests that need a job still running while they look at something else:
    a fixed sleep is too short on a loaded machine and needlessly long on a quiet one.
    Each run that gets to its end counts in ``tests:runs:<key>`` (as ``tests.count``).
    """
    _wait_released(key, limit_seconds)
    side_effects().incr(f"tests:runs:{key}")
    return {"key": key}


@job_type("tests.hold_progress", queue="default", public=False, max_retries=0)
def hold_progress(*, key: str, message: str, limit_seconds: float = 60) -> dict[str, Any]:
    """Report 50 % with ``message`` once ``<key>:progress`` is released, then hold on ``key``.

    A stream opened while the job waits sees the report as a progress event of its own.
    """
    job = current_job()
    assert job is not None
    _wait_released(f"{key}:progress", limit_seconds)
    job.progress(50, message)
    _wait_released(key, limit_seconds)
    return {"key": key}


def _wait_released(key: str, limit_seconds: float) -> None:
    deadline = time.monotonic() + limit_seconds
    while not side_effects().exists(f"tests:release:{key}"):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{key!r} was not released within {limit_seconds} s")
        time.sleep(0.01)


def release(key: str) -> None:
    """Let the ``tests.hold`` job holding on ``key`` finish."""
    side_effects().set(f"tests:release:{key}", 1, ex=600)
