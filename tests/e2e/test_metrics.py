"""The worker exporter and the web /metrics, scraped while jobs run, agree with the ledger."""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import JobRequest, job_submit_many
from tests.actors import release
from tests.e2e.commands import (
    free_port,
    scrape,
    scrape_or_empty,
    start_exporting_worker,
    worker_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-tests-0123456789"


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


def _workers_of(job_type: str) -> set[str]:
    """The worker processes that have claimed jobs of ``job_type``."""
    return set(
        JobAttempt.objects.filter(job__job_type=job_type).values_list("worker_id", flat=True)
    )


def test_worker_exporter_counts_match_the_ledger_across_worker_processes(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    worker, url = start_exporting_worker(
        start_command, tmp_path, processes=2, threads=4, PROMETHEUS_HOST="127.0.0.1"
    )
    worker_ready(worker, wait_for)
    wait_for(lambda: _value(scrape_or_empty(url), "toolboxai_jobs_workers_alive") == 2, timeout=60)
    # Both processes run jobs, however the machine schedules them: one process takes at
    # most 8 messages of a queue (4 threads, prefetch 2 each), so of 9 held jobs the other
    # process must take at least one.
    held = job_submit_many(requests=[JobRequest("tests.hold", {"key": "both"}) for _ in range(9)])
    try:
        wait_for(lambda: len(_workers_of("tests.hold")) == 2, timeout=60)
    finally:
        release("both")
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=[h.job.pk for h in held], status=JobStatus.SUCCEEDED).count()
            == 9
        ),
        timeout=60,
    )

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
    during = scrape(url)
    assert _value(during, "toolboxai_jobs_broker_up") == 1
    assert 'toolboxai_jobs_queue_messages{queue="default",state="ready"}' in during

    echo = Job.objects.filter(job_type="diagnostics.echo")
    wait_for(
        lambda: echo.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).count() == 19,
        timeout=90,
    )

    after = scrape(url)
    succeeded = echo.filter(status=JobStatus.SUCCEEDED).count()
    failed = echo.filter(status=JobStatus.FAILED).count()
    echo_attempts = JobAttempt.objects.filter(job__job_type="diagnostics.echo")
    retried = echo_attempts.filter(
        outcome=AttemptOutcome.FAILED, job__status=JobStatus.SUCCEEDED
    ).count()
    attempts = echo_attempts.count()
    labels = {"job_type": "diagnostics.echo", "queue": "default"}
    assert (succeeded, failed, retried, attempts) == (16, 3, 4, 23)
    # The held jobs' count adds up the two processes' counters.
    held_labels = {"job_type": "tests.hold", "queue": "default"}
    assert _value(after, "toolboxai_jobs_total", status="succeeded", **held_labels) == 9
    assert _value(after, "toolboxai_jobs_total", status="succeeded", **labels) == succeeded
    assert _value(after, "toolboxai_jobs_total", status="failed", **labels) == failed
    assert _value(after, "toolboxai_jobs_retried_total", job_type="diagnostics.echo") == retried
    assert (
        _value(after, "toolboxai_jobs_duration_seconds_count", job_type="diagnostics.echo")
        == attempts
    )
    assert (
        _value(after, "toolboxai_jobs_wait_seconds_count", job_type="diagnostics.echo") == attempts
    )
    assert (
        _value(after, "toolboxai_jobs_duration_seconds_sum", job_type="diagnostics.echo")
        >= 12 * 0.2
    )
    assert _value(after, "toolboxai_jobs_queue_messages", queue="default", state="dead") == failed
    assert _value(after, "toolboxai_jobs_queue_messages", queue="default", state="ready") == 0
    assert _value(after, "toolboxai_jobs_workers_alive") == 2
    # Organization is a label of the backlog gauge only, unless JOBS_METRICS_ORGANIZATION_IDS.
    assert not re.search(
        r"^toolboxai_jobs_(total|duration|wait|retried)\S*organization=", after, re.M
    )
    assert _value(after, "toolboxai_jobs_organization_backlog", organization="system") == 0

    # One namespace for ours; the rest are the client libraries' standard families.
    names = set(re.findall(r"^# TYPE (\S+) ", after, re.M))
    assert {n for n in names if not n.startswith("toolboxai_jobs_")} <= {
        n for n in names if n.startswith(("django_", "process_", "python_"))
    }
    # Every job type's labelled counters exist, at zero, before it ever ran.
    for job_type in ("content.generate_lesson", "email.send_transactional"):
        for reason in ("org_concurrency", "type_rate_limit"):
            assert (
                f'toolboxai_jobs_deferred_total{{job_type="{job_type}",reason="{reason}"}} 0.0'
                in after
            )
        assert re.search(
            rf'^toolboxai_jobs_total\{{job_type="{re.escape(job_type)}",queue="\w+",status="failed"\}} 0.0$',
            after,
            re.M,
        )
    assert 'toolboxai_jobs_worker_recycles_total{reason="max_jobs"} 0.0' in after
    assert _value(after, "toolboxai_jobs_scheduler_leader") == 0

    assert worker.stop() == 0, worker.output()


def test_web_metrics_count_requests_and_database_queries(start_command: Any, wait_for: Any) -> None:
    port = free_port()
    web = start_command("runserver", "--noreload", f"127.0.0.1:{port}", METRICS_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: scrape_or_empty(f"{url}/metrics", TOKEN), timeout=60)

    before = scrape(f"{url}/metrics", TOKEN)
    for _ in range(3):
        scrape(f"{url}/admin/login/")
    after = scrape(f"{url}/metrics", TOKEN)

    def logins(text: str) -> float:
        return _value(
            text, "django_http_responses_total_by_status_view_method_total", view="admin:login"
        )

    assert logins(after) - logins(before) == 3, web.output()
    assert _value(after, "django_http_requests_total_by_transport_total") >= 4
    assert "django_db_execute_total" in after or "django_db_new_connections_total" in after


def _port(url: str) -> int:
    return int(urllib.parse.urlsplit(url).port or 0)


def _get(
    url: str, *, source: str = "127.0.0.1", authorization: str | None = None
) -> tuple[int, str, str]:
    """Status, WWW-Authenticate and body of a GET sent from the loopback address ``source``."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10, source_address=(source, 0))
    try:
        conn.request(
            "GET", parts.path, headers={"Authorization": authorization} if authorization else {}
        )
        response = conn.getresponse()
        return (
            response.status,
            response.getheader("WWW-Authenticate") or "",
            response.read().decode(),
        )
    finally:
        conn.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) byte order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


def test_the_worker_exporter_listens_on_loopback_unless_configured(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    assert "PROMETHEUS_HOST" not in os.environ, "this test checks the default"
    worker, url = start_exporting_worker(start_command, tmp_path, processes=1, threads=1)
    wait_for(lambda: "toolboxai_jobs_broker_up 1.0" in scrape_or_empty(url), timeout=60)

    assert _listening_addresses(_port(url)) == {"127.0.0.1"}
    assert worker.stop() == 0, worker.output()


def test_a_worker_exporter_beyond_loopback_refuses_to_start_without_a_token_or_networks(
    broker: Any, start_command: Any, tmp_path: Path
) -> None:
    worker, url = start_exporting_worker(
        start_command,
        tmp_path,
        processes=1,
        PROMETHEUS_HOST="0.0.0.0",
        DJANGO_DEBUG="0",
        METRICS_TOKEN="",
        METRICS_ALLOWED_NETWORKS="",
    )

    assert worker.proc.wait(timeout=60) != 0
    output = worker.output()
    assert "PROMETHEUS_HOST='0.0.0.0'" in output
    assert "METRICS_TOKEN" in output and "METRICS_ALLOWED_NETWORKS" in output
    assert "Worker process is ready" not in output
    assert _listening_addresses(_port(url)) == set()


def test_a_worker_exporter_beyond_loopback_answers_only_to_the_token_or_allowed_networks(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    worker, url = start_exporting_worker(
        start_command,
        tmp_path,
        processes=1,
        threads=1,
        PROMETHEUS_HOST="0.0.0.0",
        DJANGO_DEBUG="0",
        METRICS_TOKEN=TOKEN,
        # Only 127.0.0.1 itself; the test's other loopback address, 127.0.0.2, needs the token.
        METRICS_ALLOWED_NETWORKS="127.0.0.1/32",
    )
    wait_for(lambda: "toolboxai_jobs_broker_up 1.0" in scrape_or_empty(url), timeout=60)
    assert _listening_addresses(_port(url)) == {"0.0.0.0"}

    status, _, body = _get(url)  # an allowed network, no token
    assert status == 200 and "toolboxai_jobs_broker_up 1.0" in body

    status, challenge, body = _get(url, source="127.0.0.2")
    assert (status, challenge) == (401, 'Bearer realm="metrics"')
    assert "toolboxai_jobs_broker_up" not in body
    status, challenge, body = _get(url, source="127.0.0.2", authorization="Bearer wrong")
    assert (status, challenge) == (401, 'Bearer realm="metrics", error="invalid_token"')
    assert "toolboxai_jobs_broker_up" not in body

    status, _, body = _get(url, source="127.0.0.2", authorization=f"Bearer {TOKEN}")
    assert status == 200 and "toolboxai_jobs_broker_up 1.0" in body
    assert worker.stop() == 0, worker.output()
