"""Job types used only by the test suite (registered because ``tests`` is an installed app)."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from jobs.broker import get_broker
from jobs.errors import SoftTimeLimitExceeded
from jobs.registry import job_type
from jobs.runtime import current_job
from jobs.scheduler.registry import periodic
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
def progress(*, steps: int, step_seconds: float) -> dict[str, Any]:
    """Report progress each step; stops at the first step after a cancel."""
    job = current_job()
    assert job is not None
    for step in range(steps):
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
