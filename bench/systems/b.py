"""System B's client: this project, through ``jobs.services``."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench.systems.common import BATCH, Action, batches, latencies, paced, timed


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
    import django

    django.setup()


def _org() -> Any:
    from tenants.models import Organization

    return Organization.objects.get(slug="bench")


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Create the bench organization (limits raised) and an API key."""
    _setup_django()
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


def _requests(kind: str, n: int, sleep_ms: int, priority: int = 5) -> list[Any]:
    from jobs.services import JobRequest

    payload: dict[str, Any] = {"message": "bench"}
    if kind == "sleep":
        payload["sleep_seconds"] = sleep_ms / 1000
    return [JobRequest(job_type="diagnostics.echo", payload=payload, priority=priority)] * n


def stage(args: argparse.Namespace) -> dict[str, Any]:
    _setup_django()
    from jobs.services import job_submit, job_submit_many

    org = _org()
    requests = _requests(args.kind, args.n, args.sleep_ms)
    urgent_id = None
    for start, end in batches(len(requests), args.urgent_after):
        if start == args.urgent_after:
            urgent = job_submit(
                job_type="diagnostics.echo",
                payload={"message": "urgent"},
                organization=org,
                priority=9,
            )
            urgent_id = str(urgent.job.id)
        job_submit_many(requests=requests[start:end], organization=org)
    return {"staged": len(requests), "urgent_id": urgent_id}


def submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    _setup_django()
    from jobs.services import job_submit_many

    org = _org()
    requests = _requests("noop", args.n, 0)
    job_submit_many(requests=requests[:10], organization=org)  # warm up connections

    def run() -> None:
        for start in range(0, len(requests), BATCH):
            job_submit_many(requests=requests[start : start + BATCH], organization=org)

    return timed(args.n, run)


def submit_single(args: argparse.Namespace) -> dict[str, Any]:
    _setup_django()
    from jobs.services import job_submit

    org = _org()
    job_submit(job_type="diagnostics.echo", payload={"message": "warm"}, organization=org)

    def run() -> None:
        for _ in range(args.n):
            job_submit(job_type="diagnostics.echo", payload={"message": "bench"}, organization=org)

    return timed(args.n, run)


def latency(args: argparse.Namespace) -> dict[str, Any]:
    _setup_django()
    from jobs.models import Job
    from jobs.services import job_submit

    org = _org()
    sent: dict[str, float] = {}
    ids: dict[str, str] = {}

    def send(i: int) -> None:
        began = time.time()
        job = job_submit(
            job_type="diagnostics.echo", payload={"message": str(i)}, organization=org
        ).job
        sent[str(i)] = began
        ids[str(job.id)] = str(i)

    paced(args.n, args.gap_ms, send)
    for i in range(args.idle_samples):
        time.sleep(2.0)
        send(args.n + i)
    deadline = time.monotonic() + 60
    rows: list[tuple[Any, Any]] = []
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
    return latencies(sent, started, args.n)


ACTIONS: dict[str, Action] = {
    "setup": setup,
    "stage": stage,
    "submit-bulk": submit_bulk,
    "submit-single": submit_single,
    "latency": latency,
}
