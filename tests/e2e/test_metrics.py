"""The worker exporter and the web /metrics, scraped while jobs run, agree with the ledger."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import JobRequest, job_submit_many
from tests.e2e.commands import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_worker_exporter_counts_match_the_ledger_across_worker_processes(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    port = free_port()
    worker = start_command(
        "rundramatiq",
        "--processes",
        "2",
        "--threads",
        "4",
        PROMETHEUS_PORT=str(port),
        PROMETHEUS_HOST="127.0.0.1",
        JOBS_METRICS_DIR=str(tmp_path / "metrics"),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: "Worker process is ready" in worker.output(), timeout=60)
    wait_for(lambda: _value(_scrape_or_empty(url), "workers_alive") == 2, timeout=60)

    requests = (
        [JobRequest("diagnostics.echo", {"message": "ok", "sleep_seconds": 0.2}) for _ in range(12)]
        + [JobRequest("diagnostics.echo", {"message": "flaky", "fail_times": 1}) for _ in range(4)]
        + [
            JobRequest("diagnostics.echo", {"message": "dead", "fail_times": 1}, max_retries=0)
            for _ in range(3)
        ]
    )
    job_submit_many(requests=requests)

    # While the jobs run: the exporter answers, and sees the queue.
    during = _scrape(url)
    assert _value(during, "jobs_broker_up") == 1
    assert 'queue_messages{queue="default",state="ready"}' in during

    wait_for(
        lambda: (
            Job.objects.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count() == 19
        ),
        timeout=90,
    )
    workers_used = set(JobAttempt.objects.values_list("worker_id", flat=True))
    assert len(workers_used) == 2, "both worker processes should have run jobs"

    after = _scrape(url)
    succeeded = Job.objects.filter(status=JobStatus.SUCCEEDED).count()
    failed = Job.objects.filter(status=JobStatus.FAILED).count()
    retried = JobAttempt.objects.filter(
        outcome=AttemptOutcome.FAILED, job__status=JobStatus.SUCCEEDED
    ).count()
    attempts = JobAttempt.objects.count()
    labels = {"job_type": "diagnostics.echo", "queue": "default"}
    assert (succeeded, failed, retried, attempts) == (16, 3, 4, 23)
    assert _value(after, "jobs_total", status="succeeded", **labels) == succeeded
    assert _value(after, "jobs_total", status="failed", **labels) == failed
    assert _value(after, "jobs_retried_total", job_type="diagnostics.echo") == retried
    assert _value(after, "job_duration_seconds_count", job_type="diagnostics.echo") == attempts
    assert _value(after, "job_wait_seconds_count", job_type="diagnostics.echo") == attempts
    assert _value(after, "job_duration_seconds_sum", job_type="diagnostics.echo") >= 12 * 0.2
    assert _value(after, "queue_messages", queue="default", state="dead") == failed
    assert _value(after, "queue_messages", queue="default", state="ready") == 0
    assert _value(after, "workers_alive") == 2
    assert "organization" not in after

    assert worker.stop() == 0, worker.output()


def _scrape_or_empty(url: str) -> str:
    try:
        return _scrape(url)
    except OSError:
        return ""


def test_web_metrics_count_requests_and_database_queries(start_command: Any, wait_for: Any) -> None:
    port = free_port()
    web = start_command("runserver", "--noreload", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _scrape_or_empty(f"{url}/metrics"), timeout=60)

    before = _scrape(f"{url}/metrics")
    for _ in range(3):
        _scrape(f"{url}/admin/login/")
    after = _scrape(f"{url}/metrics")

    def logins(text: str) -> float:
        return _value(
            text, "django_http_responses_total_by_status_view_method_total", view="admin:login"
        )

    assert logins(after) - logins(before) == 3, web.output()
    assert _value(after, "django_http_requests_total_by_transport_total") >= 4
    assert "django_db_execute_total" in after or "django_db_new_connections_total" in after
