"""Soak: 2,000 jobs while workers are killed with ``kill -9`` three times and restarted.

Acceptance of issue 8: 0 jobs lost and 0 completed twice, checked against the
ledger (one succeeded attempt per job) and against a side-effect counter the
jobs write to Redis, keyed by job id (``tests.soak``).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import JobRequest, job_submit_many
from tests.actors import side_effects
from tests.e2e.commands import kill9, start_fast_recovery_worker, start_recovery

pytestmark = [pytest.mark.e2e, pytest.mark.soak, pytest.mark.django_db(transaction=True)]

JOBS = 2_000
KILLS_AT = (0.15, 0.45, 0.75)  # fraction of jobs finished when each kill -9 happens


def test_two_thousand_jobs_survive_three_random_kill_9s_with_none_lost_or_completed_twice(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    rng = random.Random()
    start_recovery(start_command, wait_for)
    workers = [start_fast_recovery_worker(start_command, wait_for, threads=8) for _ in range(2)]
    started = time.monotonic()
    job_submit_many(
        requests=[
            JobRequest(job_type="tests.soak", payload={"key": f"s{i}", "sleep_seconds": 0.01})
            for i in range(JOBS)
        ]
    )

    def succeeded() -> int:
        return Job.objects.filter(status=JobStatus.SUCCEEDED).count()

    for fraction in KILLS_AT:
        wait_for(lambda f=fraction: succeeded() >= JOBS * f, timeout=240, interval=0.05)
        victim = rng.randrange(len(workers))
        kill9(workers[victim])
        workers[victim] = start_fast_recovery_worker(start_command, wait_for, threads=8)

    wait_for(lambda: succeeded() == JOBS, timeout=300, interval=0.5)
    elapsed = time.monotonic() - started

    # The ledger: every job succeeded, each with exactly one succeeded attempt.
    assert Job.objects.exclude(status=JobStatus.SUCCEEDED).count() == 0
    per_job = JobAttempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED)
    assert per_job.count() == JOBS
    assert per_job.values("job_id").distinct().count() == JOBS
    lost = JobAttempt.objects.filter(outcome=AttemptOutcome.LOST).count()
    # The side effects, counted outside the ledger: one per job, none missing.
    effects = {k.decode(): int(v) for k, v in side_effects().hgetall("tests:soak:effects").items()}
    assert len(effects) == JOBS and set(effects.values()) == {1}
    runs = sum(int(v) for v in side_effects().hvals("tests:soak:runs"))
    print(
        f"soak: {JOBS} jobs in {elapsed:.1f}s, 3 kill -9s, {lost} lost attempts re-run, "
        f"{runs - JOBS} re-executions that reached the side effect"
    )
    assert lost >= 1, "the kills hit jobs in flight"
