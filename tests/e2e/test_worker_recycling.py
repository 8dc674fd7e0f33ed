"""Worker recycling: `rundramatiq` replaces a worker process past JOBS_WORKER_MAX_JOBS or _RSS_MB."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import JobRequest, job_submit_many
from tests.actors import side_effects
from tests.e2e.commands import (
    scrape_or_empty,
    start_exporting_worker,
    start_worker,
    worker_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REPLACED = re.compile(r"Worker process (\d+) exited cleanly; started (\d+) in its place")


def _recycles(text: str, reason: str) -> float:
    found = re.search(
        rf'^toolboxai_jobs_worker_recycles_total{{reason="{reason}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else -1.0


def test_a_worker_with_max_jobs_50_runs_500_jobs_in_ten_replaced_processes_each_once(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    worker, url = start_exporting_worker(
        start_command, tmp_path, processes=2, threads=4, JOBS_WORKER_MAX_JOBS="50"
    )
    worker_ready(worker, wait_for, count=2, timeout=90)
    side_effects().delete("tests:runs:recycling")

    job_submit_many(requests=[JobRequest("tests.count", {"key": "recycling"}) for _ in range(500)])

    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 500, timeout=600)
    # Ten processes ran exactly 50 jobs each; each retired and has a successor.
    wait_for(lambda: len(REPLACED.findall(worker.output())) == 10, timeout=60)
    output = worker.output()
    assert output.count("it started 50 jobs (JOBS_WORKER_MAX_JOBS=50)") == 10, output
    assert "exited unexpectedly" not in output and "Shutdown interrupted" not in output, output

    # The ledger: one attempt per job, and it succeeded; the job ran once (its own counter).
    attempts = list(JobAttempt.objects.values_list("job_id", "outcome", "worker_id"))
    assert len(attempts) == 500
    assert {outcome for _, outcome, _ in attempts} == {AttemptOutcome.SUCCEEDED}
    assert len({job_id for job_id, _, _ in attempts}) == 500
    assert int(side_effects().get("tests:runs:recycling") or 0) == 500
    assert sorted(Counter(w for _, _, w in attempts).values()) == [50] * 10

    wait_for(lambda: _recycles(scrape_or_empty(url), "max_jobs") == 10, timeout=30)
    assert _recycles(scrape_or_empty(url), "max_rss") == 0
    assert worker.stop() == 0, worker.output()


def test_a_job_that_leaks_memory_trips_max_rss_and_its_process_is_replaced(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_worker(start_command, wait_for, timeout=90, JOBS_WORKER_MAX_RSS_MB="300")
    leak = job_submit_many(requests=[JobRequest("tests.leak_memory", {"mib": 400})])[0].job

    wait_for(lambda: REPLACED.search(worker.output()) is not None, timeout=90)
    retired, successor = map(int, REPLACED.search(worker.output()).groups())  # type: ignore[union-attr]
    output = worker.output()
    assert re.search(r"its resident memory is \d+ MiB \(JOBS_WORKER_MAX_RSS_MB=300\)", output)
    leak.refresh_from_db()
    assert leak.status == JobStatus.SUCCEEDED
    attempt = JobAttempt.objects.get(job=leak)
    assert f":{retired}:" in attempt.worker_id

    # The fresh process runs the next job.
    after = job_submit_many(requests=[JobRequest("tests.count", {"key": "after-leak"})])[0].job
    wait_for(lambda: Job.objects.get(pk=after.pk).status == JobStatus.SUCCEEDED, timeout=60)
    assert f":{successor}:" in JobAttempt.objects.get(job=after).worker_id
    assert "exited unexpectedly" not in worker.output()
    assert worker.stop() == 0, worker.output()
