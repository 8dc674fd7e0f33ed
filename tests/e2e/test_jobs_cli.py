"""``manage.py jobs`` end to end: real Redis, real Postgres, real workers, the command as a subprocess."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import dramatiq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.models import Job, JobAttempt, JobEvent, JobStatus
from jobs.selectors.queues import queue_stats, workers
from jobs.services import job_submit
from tests.e2e.commands import manage

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_worker(broker: Any) -> Iterator[dramatiq.Worker]:
    """A real worker in this process; tests may stop it early."""
    w = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    w.start()
    yield w
    w.stop(timeout=10_000)


def _dead_letter(wait_for: Any, message: str = "boom", **submit: Any) -> Job:
    job = job_submit(
        job_type="diagnostics.echo",
        payload={"message": message, "fail_times": 1},
        max_retries=0,
        **submit,
    ).job
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.FAILED).exists(), timeout=30)
    job.refresh_from_db()
    return job


def _stats(broker: Any, queue: str = "default") -> Any:
    return next(s for s in queue_stats(broker) if s.queue == queue)


def test_ping_exits_zero_while_this_hosts_workers_heartbeat_and_one_when_none_do(
    broker: Any,
) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        healthy = manage("jobs", "ping")
        assert healthy.returncode == 0, healthy.stderr
        assert "OK: 1 worker process(es)" in healthy.stdout
    finally:
        worker.stop(timeout=10_000)

    unhealthy = manage("jobs", "ping")

    assert unhealthy.returncode == 1
    assert "Unhealthy: 0 worker process(es)" in unhealthy.stderr
    assert "rundramatiq" in unhealthy.stderr
    assert manage("jobs", "ping", "--host", "elsewhere").returncode == 1


def test_status_and_queues_show_workers_depths_bands_and_dead_letters(
    broker: Any, live_worker: dramatiq.Worker, wait_for: Any
) -> None:
    _dead_letter(wait_for)

    status = manage("jobs", "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert len(data["workers"]) == 1
    default = next(q for q in data["queues"] if q["queue"] == "default")
    assert default["dead_letters"] == 1

    live_worker.stop(timeout=10_000)
    for priority in (9, 5, 1):
        job_submit(job_type="diagnostics.echo", payload={"message": "m"}, priority=priority)
    job_submit(job_type="diagnostics.echo", payload={"message": "m"}, delay=timedelta(minutes=5))

    queues = manage("jobs", "queues", "--json")
    assert queues.returncode == 0, queues.stderr
    default = next(q for q in json.loads(queues.stdout) if q["queue"] == "default")
    assert (default["ready"], default["delayed"], default["dead"]) == (3, 1, 1)
    assert default["bands"] == {"default.urgent": 1, "default": 1, "default.bulk": 1}

    text = manage("jobs", "status")
    assert text.returncode == 0
    assert "Workers: 0 process(es)" in text.stdout
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("default "))
    assert line.split()[:5] == ["default", "3", "0", "1", "1"]


def test_inspect_running_names_the_worker_and_cancel_stops_the_job(
    broker: Any, live_worker: dramatiq.Worker, wait_for: Any
) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "slow", "sleep_seconds": 60}
    ).job
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists())
    # The in-process worker has registered its heartbeat (as `jobs status` would show).
    wait_for(lambda: broker.broker_id in {w.broker_id for w in workers(broker)})

    inspect = manage("jobs", "inspect", "--running", "--json")
    assert inspect.returncode == 0, inspect.stderr
    rows = json.loads(inspect.stdout)
    assert [r["id"] for r in rows] == [str(job.pk)]
    attempt = JobAttempt.objects.get(job=job)
    assert rows[0]["worker_id"] == attempt.worker_id
    assert rows[0]["worker_alive"] is True
    assert rows[0]["runtime_seconds"] >= 0

    cancel = manage("jobs", "cancel", str(job.pk))
    assert cancel.returncode == 0, cancel.stderr
    assert "asked to stop" in cancel.stdout
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists())

    again = manage("jobs", "cancel", str(job.pk))
    assert again.returncode == 4
    assert "cannot be cancelled" in again.stderr


def test_retry_requeues_a_failed_job_and_bad_ids_say_how_to_find_one(
    broker: Any, live_worker: dramatiq.Worker, wait_for: Any
) -> None:
    job = _dead_letter(wait_for)

    retry = manage("jobs", "retry", str(job.pk), "--json")

    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout)["status"] == "queued"
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=JobStatus.SUCCEEDED).exists())
    assert JobEvent.objects.filter(job=job, kind="retried", via="cli").count() == 1

    missing = manage("jobs", "retry", str(uuid.uuid4()))
    assert missing.returncode == 3
    assert "jobs inspect" in missing.stderr
    malformed = manage("jobs", "cancel", "not-a-job")
    assert malformed.returncode == 2
    assert "is not a job id" in malformed.stderr


def test_stats_report_throughput_and_failure_rate_per_type_for_one_hour_and_a_day() -> None:
    now = timezone.now()

    def finished(status: str, ago: timedelta, job_type: str = "diagnostics.echo") -> None:
        Job.objects.create(
            job_type=job_type,
            queue="default",
            status=status,
            created_at=now - ago - timedelta(seconds=2),
            started_at=now - ago - timedelta(seconds=2),
            finished_at=now - ago,
        )

    for _ in range(3):
        finished(JobStatus.SUCCEEDED, timedelta(minutes=10))
    finished(JobStatus.FAILED, timedelta(minutes=20))
    finished(JobStatus.FAILED, timedelta(hours=5))
    finished(JobStatus.SUCCEEDED, timedelta(minutes=5), job_type="tests.count")

    out = StringIO()
    call_command("jobs", "stats", "--json", stdout=out)
    rows = {(r["window"], r["job_type"]): r for r in json.loads(out.getvalue())}

    hour = rows[("1h", "diagnostics.echo")]
    assert (hour["finished"], hour["succeeded"], hour["failed"]) == (4, 3, 1)
    assert hour["failure_rate"] == 0.25
    assert hour["avg_duration_seconds"] == 2.0
    day = rows[("24h", "diagnostics.echo")]
    assert (day["finished"], day["failed"], day["failure_rate"]) == (5, 2, 0.4)
    assert rows[("1h", "tests.count")]["failure_rate"] == 0.0

    text = manage("jobs", "stats")
    assert text.returncode == 0, text.stderr
    assert "FAILURE RATE" in text.stdout
    assert "25.0%" in text.stdout


def test_purge_removes_waiting_and_delayed_messages_and_cancels_their_jobs(broker: Any) -> None:
    purged = [
        job_submit(job_type="diagnostics.echo", payload={"message": str(i)}, priority=p).job
        for i, p in enumerate((5, 5, 5, 9, 1))
    ]
    purged.append(
        job_submit(
            job_type="diagnostics.echo", payload={"message": "later"}, delay=timedelta(hours=1)
        ).job
    )
    other_queue = job_submit(job_type="tests.whoami").job

    refused = manage("jobs", "purge", "default")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert "5 waiting and 1 delayed" in refused.stderr
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 7

    done = manage("jobs", "purge", "default", "--yes", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["removed_messages"], result["cancelled_jobs"]) == (6, 6)
    assert sorted(result["job_ids"]) == sorted(str(j.pk) for j in purged)
    assert Job.objects.filter(pk__in=[j.pk for j in purged], status="cancelled").count() == 6
    assert JobEvent.objects.filter(kind="purged", via="cli").count() == 6
    stats = _stats(broker)
    assert (stats.ready, stats.delayed) == (0, 0)
    other_queue.refresh_from_db()
    assert other_queue.status == JobStatus.QUEUED
    assert _stats(broker, "tenant_ops").ready == 1

    unknown = manage("jobs", "purge", "nope", "--yes")
    assert unknown.returncode == 2
    assert "Choose from: default" in unknown.stderr


def test_dead_letters_can_be_listed_shown_replayed_and_purged(
    broker: Any, live_worker: dramatiq.Worker, wait_for: Any
) -> None:
    first = _dead_letter(wait_for, message="password=hunter2 and tbx_0a1b2c3d_abcdefghijklmnop")
    second = _dead_letter(wait_for, message="second")
    big = job_submit(job_type="tests.big_result", payload={"size": 1_000_000}).job
    wait_for(lambda: Job.objects.filter(pk=big.pk, status=JobStatus.FAILED).exists(), timeout=30)

    listed = manage("jobs", "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["total"] == 3
    assert {d["id"] for d in data["dead_letters"]} == {str(first.pk), str(second.pk), str(big.pk)}
    table = manage("jobs", "dead-letters", "list", "--type", "tests.big_result")
    assert "ResultTooLarge" in table.stdout
    assert str(first.pk) not in table.stdout

    shown = manage("jobs", "dead-letters", "show", str(first.pk))
    assert shown.returncode == 0, shown.stderr
    assert "EchoFailure" in shown.stdout
    assert "Attempts:" in shown.stdout
    assert "hunter2" not in shown.stdout
    assert "abcdefghijklmnop" not in shown.stdout

    replayed = manage("jobs", "dead-letters", "replay", str(first.pk))
    assert replayed.returncode == 0, replayed.stderr
    assert "Replayed 1 dead letter(s)." in replayed.stdout
    wait_for(lambda: Job.objects.filter(pk=first.pk, status=JobStatus.SUCCEEDED).exists())
    assert JobEvent.objects.filter(job=first, kind="replayed", via="cli").count() == 1
    assert _stats(broker).dead == 2  # Redis's copy of the replayed one is gone

    live_worker.stop(timeout=10_000)
    by_type = manage("jobs", "dead-letters", "replay", "--type", "tests.big_result", "--json")
    assert by_type.returncode == 0, by_type.stderr
    assert json.loads(by_type.stdout)["job_ids"] == [str(big.pk)]
    big.refresh_from_db()
    assert big.status == JobStatus.QUEUED

    assert manage("jobs", "dead-letters", "purge").returncode == 2
    purged = manage("jobs", "dead-letters", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "Purged 1 dead letter(s)" in purged.stdout
    second.refresh_from_db()
    assert (second.status, second.dead_lettered_at) == (JobStatus.FAILED, None)
    assert JobEvent.objects.filter(job=second, kind="purged").exists()
    assert _stats(broker).dead == 0
    assert "No dead letters." in manage("jobs", "dead-letters", "list").stdout

    missing = manage("jobs", "dead-letters", "show", str(second.pk))
    assert missing.returncode == 3
    assert "dead-letters list" in missing.stderr


def test_replaying_thousands_of_dead_letters_reports_progress_and_sends_them_all(
    broker: Any,
) -> None:
    now = timezone.now()
    Job.objects.bulk_create(
        [
            Job(
                job_type="diagnostics.echo",
                queue="default",
                payload={"message": str(i)},
                status=JobStatus.FAILED,
                attempts=1,
                error_type="EchoFailure",
                finished_at=now,
                dead_lettered_at=now,
            )
            for i in range(1_200)
        ]
    )

    replay = manage("jobs", "dead-letters", "replay", "--all")

    assert replay.returncode == 0, replay.stderr
    assert "replaying: 1200/1200 (100%)" in replay.stderr
    assert "Replayed 1200 dead letter(s)." in replay.stdout
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 1_200
    assert JobEvent.objects.filter(kind="replayed").count() == 1_200
    assert _stats(broker).ready == 1_200


def test_errors_from_call_command_carry_the_documented_exit_codes() -> None:
    with pytest.raises(CommandError) as not_found:
        call_command("jobs", "cancel", str(uuid.uuid4()))
    assert not_found.value.returncode == 3
    with pytest.raises(CommandError) as no_org:
        call_command("jobs", "stats", "--organization", "nobody")
    assert no_org.value.returncode == 3
    assert "createorganization" in str(no_org.value)
