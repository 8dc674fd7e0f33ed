"""``manage.py rundramatiq`` as a subprocess runs jobs end to end."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Job, JobStatus
from jobs.services import JobRequest, job_submit, job_submit_many
from tests.e2e.commands import start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_rundramatiq_runs_submitted_jobs_through_success_and_retry(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_worker(start_command, wait_for, threads=4)
    # The worker process listens for wake-ups (one subscriber) instead of only polling.
    wait_for(lambda: broker.client.pubsub_numsub(broker.wakeups.channel)[0][1] == 1)
    ok = job_submit(job_type="diagnostics.echo", payload={"message": "from e2e"}).job
    flaky = job_submit(
        job_type="diagnostics.echo", payload={"message": "flaky", "fail_times": 1}
    ).job

    wait_for(
        lambda: (
            Job.objects.filter(pk__in=[ok.pk, flaky.pk], status=JobStatus.SUCCEEDED).count() == 2
        ),
        timeout=40,
    )

    ok.refresh_from_db()
    flaky.refresh_from_db()
    assert ok.result == {"message": "from e2e"}
    assert flaky.attempts == 2
    assert worker.proc.poll() is None, worker.output()
    assert worker.stop() == 0, worker.output()


def test_rundramatiq_refuses_an_unknown_queue_with_the_list_of_queues(
    start_command: Any, wait_for: Any
) -> None:
    worker = start_command("rundramatiq", "--queues", "nope")
    wait_for(lambda: worker.proc.poll() is not None, timeout=30)
    assert worker.proc.returncode != 0
    assert "Unknown queue(s): nope" in worker.output()
    assert "ai_generation" in worker.output()


def test_an_urgent_job_overtakes_a_backlog_of_two_thousand(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_worker(start_command, wait_for, threads=8)
    backlog = [
        JobRequest(job_type="diagnostics.echo", payload={"message": str(i), "sleep_seconds": 0.01})
        for i in range(2000)
    ]
    job_submit_many(requests=backlog)
    urgent = job_submit(job_type="diagnostics.echo", payload={"message": "urgent"}, priority=9).job

    wait_for(
        lambda: Job.objects.filter(pk=urgent.pk, status=JobStatus.SUCCEEDED).exists(), timeout=60
    )

    urgent.refresh_from_db()
    assert urgent.started_at is not None
    started_before = Job.objects.filter(priority=5, started_at__lt=urgent.started_at).count()
    print(f"backlog jobs started before the urgent one: {started_before}")
    assert started_before <= 200, f"{started_before} backlog jobs started first"
    worker.stop()
