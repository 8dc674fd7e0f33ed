"""One job's JSON log lines, from submission through every worker attempt, found by job_id alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.models import Job, JobStatus
from tests.e2e.commands import manage, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRETS = ("hunter2", "tbx_0a1b2c3d_Zm9vYmFyYmF6cXV4", "sk-abcdefghijklmnopqrstuvwx")
SUBMIT = (
    "from jobs.services import job_submit; "
    "print(job_submit(job_type='diagnostics.echo', payload={'message': "
    "'password=hunter2 key tbx_0a1b2c3d_Zm9vYmFyYmF6cXV4 sk-abcdefghijklmnopqrstuvwx', "
    "'fail_times': 2}).job.id)"
)


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_a_jobs_log_lines_from_submission_through_every_attempt_share_its_job_id(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_worker(start_command, wait_for, LOG_FORMAT="json")

    submitted = manage("shell", "-c", SUBMIT, LOG_FORMAT="json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    wait_for(lambda: Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED).exists(), timeout=60)
    wait_for(lambda: "succeeded after attempt 3" in worker.output(), timeout=10)

    records = _json_lines(submitted.stderr) + _json_lines(worker.output())
    mine = [r for r in records if r.get("job_id") == job_id]
    messages = [r["message"] for r in mine]

    assert messages[0].startswith(f"Job {job_id} submitted")
    # An attempt's start is logged at DEBUG; its end line names it (attempt, duration).
    assert not any("started (attempt" in m for m in messages)
    for attempt in (1, 2):
        line = next(r for r in mine if f"retrying after attempt {attempt}" in r["message"])
        assert line["attempt"] == attempt
    assert any(m.startswith(f"Job {job_id} retrying after attempt 1") for m in messages)
    assert any(m.startswith(f"Job {job_id} retrying after attempt 2") for m in messages)
    finished = next(r for r in mine if "succeeded after attempt 3" in r["message"])
    assert finished["attempt"] == 3
    assert finished["duration_seconds"] >= 0
    for record in mine:
        assert {"time", "level", "logger", "message", "organization_id", "actor"} <= set(record)
    assert {r["actor"] for r in mine} == {"diagnostics.echo"}
    assert any(r["logger"] == "jobs.services.submission" for r in mine)
    assert any(r["logger"] == "dramatiq.worker.WorkerThread" for r in mine), "failures too"

    everything = submitted.stdout + submitted.stderr + worker.output()
    for secret in SECRETS:
        assert secret not in everything
    assert "[redacted]" in worker.output()
