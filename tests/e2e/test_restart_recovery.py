"""Same-host restart recovery: a worker restarted on its host runs its dead predecessor's job at once.

No recovery loop runs here and the heartbeat timeout is ten minutes, so only
the starting worker (``jobs.services.restart_recovery``) can recover a job.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import job_submit
from jobs.services.recovery_ledger import WORKER_LOST
from tests.actors import release, side_effects
from tests.e2e.commands import kill9, start_fast_recovery_worker, worker_ready
from tests.e2e.conftest import FAST_RECOVERY_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLOW_HEARTBEAT_MS = "600000"
SLOW_HEARTBEAT = {"JOBS_HEARTBEAT_TIMEOUT_MS": SLOW_HEARTBEAT_MS}


def _running_job(start_command: Any, wait_for: Any, host: str, key: str) -> tuple[Any, Job]:
    """A worker on ``host`` running a ``tests.hold`` job on ``key``: held until ``release(key)``."""
    worker = start_fast_recovery_worker(
        start_command, wait_for, JOBS_WORKER_HOST=host, JOBS_HEARTBEAT_TIMEOUT_MS=SLOW_HEARTBEAT_MS
    )
    job = job_submit(job_type="tests.hold", payload={"key": key}).job
    wait_for(
        lambda: JobAttempt.objects.filter(job=job, finished_at__isnull=True).exists(), timeout=60
    )
    return worker, job


def _attempts(job: Job) -> list[tuple[str, str, str]]:
    return list(
        JobAttempt.objects.filter(job=job)
        .order_by("number")
        .values_list("outcome", "error_type", "worker_id")
    )


def test_a_worker_restarted_on_the_same_host_runs_the_killed_workers_job_again_at_once(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    host = f"restart-{uuid.uuid4().hex[:8]}"
    worker, job = _running_job(start_command, wait_for, host, "restart-same-host")

    kill9(worker)
    release("restart-same-host")
    start_fast_recovery_worker(
        start_command, wait_for, JOBS_WORKER_HOST=host, JOBS_HEARTBEAT_TIMEOUT_MS=SLOW_HEARTBEAT_MS
    )

    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, timeout=90)
    attempts = _attempts(job)
    assert [(outcome, error) for outcome, error, _ in attempts] == [
        (AttemptOutcome.LOST, WORKER_LOST),
        (AttemptOutcome.SUCCEEDED, ""),
    ]
    assert all(worker_id.startswith(f"{host}:") for _, _, worker_id in attempts)
    lost = JobAttempt.objects.get(job=job, number=1)
    assert "same host" in lost.error_message
    assert side_effects().get("tests:runs:restart-same-host") == b"1"


def test_a_live_worker_leaves_its_hosts_live_workers_alone_and_recovers_one_that_dies(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    host = f"restart-{uuid.uuid4().hex[:8]}"
    first, job = _running_job(start_command, wait_for, host, "restart-live")
    # A sibling on the same host that consumes another queue, so it cannot run the jobs.
    sibling = start_command(
        "rundramatiq",
        "-p",
        "1",
        "-t",
        "1",
        "--queues",
        "email",
        **{**FAST_RECOVERY_ENV, **SLOW_HEARTBEAT, "JOBS_WORKER_HOST": host},
    )
    worker_ready(sibling, wait_for, timeout=180)
    release("restart-live")  # still running when the sibling started

    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, timeout=90)
    assert [(o, e) for o, e, _ in _attempts(job)] == [(AttemptOutcome.SUCCEEDED, "")]

    doomed = job_submit(
        job_type="tests.count", payload={"key": "restart-dies", "sleep_seconds": 60}
    ).job
    wait_for(lambda: JobAttempt.objects.filter(job=doomed).exists(), timeout=60)
    kill9(first)

    # Nothing restarts and no recovery loop runs: the live sibling finds the dead process.
    wait_for(lambda: Job.objects.get(pk=doomed.pk).status == JobStatus.RETRYING, timeout=60)
    lost = JobAttempt.objects.get(job=doomed, number=1)
    assert (lost.outcome, lost.error_type) == (AttemptOutcome.LOST, WORKER_LOST)
    assert "same host" in lost.error_message
