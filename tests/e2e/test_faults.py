"""Fault injection against real processes: kill -9, SIGTERM, Redis restarts, poison pills, crashes.

Workers (``manage.py rundramatiq``) and the recovery loop (``manage.py
recover``) run as subprocesses with a 2 s heartbeat timeout, so each test
takes seconds, not minutes. Side effects are counted in Redis by the test
job types (``tests/actors.py``), outside the ledger.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from jobs.models import AttemptOutcome, Job, JobAttempt, JobOutbox, JobStatus
from jobs.services import job_submit
from jobs.services.recovery_ledger import POISON, WORKER_LOST, WORKER_SHUTDOWN
from tests.actors import release, side_effects
from tests.chaos.servers import tcp_proxy
from tests.e2e.commands import kill9, start_fast_recovery_worker, start_recovery
from tests.e2e.conftest import FAST_RECOVERY_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _unfinished(jobs: list[Job], *processes: Any) -> str:
    """The jobs among ``jobs`` that have not succeeded, and the processes' last log lines."""
    rows = Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(status="succeeded")
    lines = [
        f"{row.pk} {row.status} attempts={row.attempts} enqueued_at={row.enqueued_at}"
        for row in rows
    ]
    for process in processes:
        tail = [line for line in process.output().splitlines() if " DEBUG " not in line][-40:]
        lines += [f"--- {process.log_path.name}", *tail]
    return "\n".join(lines)


def _reload(job: Job) -> Job:
    job.refresh_from_db()
    return job


def _running(job: Job) -> bool:
    return _reload(job).status == JobStatus.RUNNING


def _outcomes(job: Job) -> list[tuple[str, str]]:
    return list(
        JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", "error_type")
    )


def test_a_job_whose_worker_is_killed_mid_run_succeeds_exactly_once(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    start_recovery(start_command, wait_for)
    worker = start_fast_recovery_worker(start_command, wait_for)
    job = job_submit(job_type="tests.hold", payload={"key": "kill-mid"}).job
    wait_for(lambda: _running(job), timeout=30)

    kill9(worker)  # while the job is held: it cannot have finished first
    release("kill-mid")
    start_fast_recovery_worker(start_command, wait_for)

    wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED, timeout=60)
    assert side_effects().get("tests:runs:kill-mid") == b"1"
    assert _outcomes(job) == [(AttemptOutcome.LOST, WORKER_LOST), (AttemptOutcome.SUCCEEDED, "")]


def test_the_schedulers_leader_runs_the_recovery_loop(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    # No `manage.py recover`: only the scheduler, as docker-compose and `make run` deploy it.
    scheduler = start_command("periodiq", **FAST_RECOVERY_ENV)
    wait_for(lambda: broker.client.exists(f"{broker.namespace}:__recovery__"), timeout=60)
    worker = start_fast_recovery_worker(start_command, wait_for)
    job = job_submit(job_type="tests.hold", payload={"key": "kill-led"}).job
    wait_for(lambda: _running(job), timeout=30)

    kill9(worker)  # while the job is held: it cannot have finished first
    release("kill-led")
    start_fast_recovery_worker(start_command, wait_for)

    wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED, timeout=60)
    assert side_effects().get("tests:runs:kill-led") == b"1"
    assert _outcomes(job) == [(AttemptOutcome.LOST, WORKER_LOST), (AttemptOutcome.SUCCEEDED, "")]
    assert scheduler.proc.poll() is None, scheduler.output()


def test_every_message_a_killed_worker_had_prefetched_completes(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    start_recovery(start_command, wait_for)
    # One thread: it prefetches 2 per queue.
    worker = start_fast_recovery_worker(start_command, wait_for, threads=1)
    jobs = [job_submit(job_type="tests.hold", payload={"key": f"pre{i}"}).job for i in range(6)]
    acks = f"{broker.namespace}:__acks__.*"
    wait_for(
        lambda: (
            any(_running(j) for j in jobs)
            and sum(broker.client.scard(k) for k in broker.client.keys(acks)) >= 2
        ),
        timeout=30,
    )

    kill9(worker)  # while the first job is held and the next ones wait, prefetched
    for i in range(6):
        release(f"pre{i}")
    start_fast_recovery_worker(start_command, wait_for, threads=2)

    wait_for(
        lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count() == 6,
        timeout=90,
    )
    assert [side_effects().get(f"tests:runs:pre{i}") for i in range(6)] == [b"1"] * 6


def test_a_job_that_kills_its_worker_every_time_fails_as_poison_after_three_deaths(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    start_recovery(start_command, wait_for)
    job = job_submit(job_type="tests.crash_worker").job

    for death in range(1, 4):
        # Not start_fast_recovery_worker(): the job may kill the process before it
        # logs that it is ready.
        crashing = start_command(
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            "4",
            # Dramatiq waits this long for a worker that dies while booting.
            "--worker-fork-timeout",
            "500",
            **{**FAST_RECOVERY_ENV, "TESTS_ALLOW_CRASH": "1"},
        )
        wait_for(lambda w=crashing: w.proc.poll() is not None, timeout=60)
        assert side_effects().get("tests:crashes") == str(death).encode()
        # Recovery marks the attempt lost and puts the message back for the next worker.
        wait_for(lambda: _reload(job).status == JobStatus.RETRYING, timeout=30)

    survivor = start_fast_recovery_worker(start_command, wait_for, TESTS_ALLOW_CRASH="1")
    wait_for(lambda: _reload(job).status == JobStatus.FAILED, timeout=60)

    assert job.error_type == POISON
    assert side_effects().get("tests:crashes") == b"3", "not delivered a fourth time"
    assert _outcomes(job) == [(AttemptOutcome.LOST, WORKER_LOST)] * 3
    wait_for(lambda: broker.client.zcard(f"{broker.namespace}:default.XQ") == 1)
    assert survivor.proc.poll() is None


def test_sigterm_lets_jobs_in_flight_finish_and_reruns_the_ones_that_cannot(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_fast_recovery_worker(
        start_command, wait_for, JOBS_WORKER_SHUTDOWN_TIMEOUT_MS="5000"
    )
    # Both held: "short" is let go once the worker is stopping, "long" only after it stopped.
    short = job_submit(job_type="tests.hold", payload={"key": "short"}).job
    long = job_submit(job_type="tests.hold", payload={"key": "long"}).job
    wait_for(lambda: _running(short) and _running(long), timeout=30)

    worker.proc.send_signal(signal.SIGTERM)  # once: a second one kills the worker at once
    release("short")
    assert worker.proc.wait(timeout=60) == 0, worker.output()

    assert _reload(short).status == JobStatus.SUCCEEDED
    assert _reload(long).status == JobStatus.RETRYING
    assert _outcomes(long) == [(AttemptOutcome.LOST, WORKER_SHUTDOWN)]
    assert "Interrupted" in JobAttempt.objects.get(job=long).error_message
    assert side_effects().get("tests:runs:long") is None

    release("long")
    # No recovery loop needed: the message was handed back.
    start_fast_recovery_worker(start_command, wait_for)
    wait_for(lambda: _reload(long).status == JobStatus.SUCCEEDED, timeout=60)
    assert side_effects().get("tests:runs:long") == b"1"
    assert side_effects().get("tests:runs:short") == b"1"


def test_a_crash_between_commit_and_send_is_repaired_by_the_outbox_relay(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    code = (
        "import os\n"
        "from django.db import transaction\n"
        "from jobs.services import job_submit\n"
        "with transaction.atomic():\n"
        "    transaction.on_commit(lambda: os._exit(17))  # dies after COMMIT, before the send\n"
        "    print(job_submit(job_type='tests.count', payload={'key': 'outbox'}).job.pk, flush=True)\n"
    )
    submitter = start_command("shell", "-c", code)
    wait_for(lambda: submitter.proc.poll() is not None, timeout=60)
    assert submitter.proc.returncode == 17, submitter.output()
    job = Job.objects.get()
    assert str(job.pk) in submitter.output()
    assert job.status == JobStatus.QUEUED
    # The submission's outbox row still stands for the send that never happened.
    assert JobOutbox.objects.get().job_ids == [str(job.pk)]
    assert broker.client.llen(f"{broker.namespace}:default") == 0, "nothing reached Redis"

    start_recovery(start_command, wait_for)
    start_fast_recovery_worker(start_command, wait_for)

    wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED, timeout=60)
    assert side_effects().get("tests:runs:outbox") == b"1"
    wait_for(lambda: not JobOutbox.objects.exists(), timeout=30)


def test_a_crash_after_the_send_before_the_outbox_delete_runs_the_job_once(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    code = (
        "import os\n"
        "from jobs.services import job_submit\n"
        "print(job_submit(job_type='tests.count', payload={'key': 'forgot'}).job.pk, flush=True)\n"
        "os._exit(17)  # dies after the send, before its forgetter deletes the outbox row\n"
    )
    submitter = start_command("shell", "-c", code, JOBS_OUTBOX_DELETE_LINGER_MS="600000")
    wait_for(lambda: submitter.proc.poll() is not None, timeout=60)
    assert submitter.proc.returncode == 17, submitter.output()
    job = Job.objects.get()
    assert JobOutbox.objects.get().job_ids == [str(job.pk)]
    queue = f"{broker.namespace}:default"
    assert broker.client.llen(queue) == 1, "the message reached Redis"

    start_recovery(start_command, wait_for)
    # The relay sends the still-queued job once more, and drops the row.
    wait_for(lambda: not JobOutbox.objects.exists(), timeout=30)
    assert broker.client.llen(queue) == 2
    start_fast_recovery_worker(start_command, wait_for)

    wait_for(lambda: _reload(job).status == JobStatus.SUCCEEDED, timeout=60)
    wait_for(lambda: broker.client.hlen(f"{queue}.msgs") == 0, timeout=30)  # both acknowledged
    assert side_effects().get("tests:runs:forgot") == b"1"
    assert _reload(job).attempts == 1


def test_workers_survive_a_redis_restart_that_loses_every_message_and_no_job_is_lost(
    broker: Any, broker_on: Any, redis_server: Any, start_command: Any, wait_for: Any
) -> None:
    server = redis_server()  # no persistence: a restart loses everything
    private = broker_on(server.url)
    counters = private.client
    recovery = start_recovery(start_command, wait_for)
    worker = start_fast_recovery_worker(start_command, wait_for, threads=4)
    # A job whose own INCR meets the restart fails that attempt; a retry keeps it from
    # failing for good (its counter was not incremented, so it still counts one run).
    jobs = [
        job_submit(
            job_type="tests.count",
            payload={"key": f"r{i}", "sleep_seconds": 0.2},
            max_retries=3,
        ).job
        for i in range(40)
    ]
    delayed = job_submit(
        job_type="tests.count", payload={"key": "r-delayed"}, delay=timedelta(seconds=6)
    ).job
    wait_for(lambda: Job.objects.filter(status="succeeded").count() >= 8, timeout=60)
    done_before = Job.objects.filter(status="succeeded").first()
    assert done_before is not None
    marker = f"tests:runs:{done_before.payload['key']}"
    assert counters.get(marker) == b"1"

    server.restart()

    assert counters.get(marker) is None, "the restart lost every key"
    everything = [*jobs, delayed]
    wait_for(
        lambda: (
            Job.objects.filter(pk__in=[j.pk for j in everything], status="succeeded").count() == 41
        ),
        timeout=120,
        describe=lambda: _unfinished(everything, worker, recovery),
    )
    assert worker.proc.poll() is None, "the worker survived the restart"
    after = job_submit(job_type="tests.count", payload={"key": "r-after"}).job
    wait_for(lambda: _reload(after).status == JobStatus.SUCCEEDED, timeout=60)
    # Counters written before the restart were lost with it; none may exceed 1.
    runs = [counters.get(f"tests:runs:r{i}") for i in range(40)]
    assert all(r in (None, b"1") for r in runs), runs
    assert JobAttempt.objects.filter(outcome=AttemptOutcome.SUCCEEDED).count() == 42
    started, scheduled = _reload(delayed).started_at, delayed.scheduled_for
    assert started is not None and scheduled is not None and started >= scheduled


def test_a_retry_the_worker_cannot_send_is_sent_by_the_recovery_loop(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    # The worker reaches Redis through a proxy the test cuts; the recovery loop and this
    # test reach it directly. Redis keeps its data, so no reconciliation re-sends anything.
    redis_url = urlsplit(settings.REDIS_URL)
    # A cut of a few seconds must not pass for a dead worker (that path re-sends too).
    patient = {"JOBS_HEARTBEAT_TIMEOUT_MS": "30000"}
    with tcp_proxy(redis_url.port or 6379) as (proxy, port):
        recovery = start_recovery(start_command, wait_for, **patient)
        worker = start_fast_recovery_worker(
            start_command,
            wait_for,
            threads=2,
            REDIS_URL=redis_url._replace(netloc=f"127.0.0.1:{port}").geturl(),
            **patient,
        )
        # Its INCR, after the sleep, meets the cut: the attempt fails, and so does the
        # send of its retry.
        job = job_submit(
            job_type="tests.count",
            payload={"key": "unsent-retry", "sleep_seconds": 2.0},
            max_retries=2,
        ).job
        wait_for(lambda: _reload(job).status == JobStatus.RUNNING, timeout=60)
        proxy.cut()
        wait_for(lambda: _reload(job).status == JobStatus.RETRYING, timeout=60)
        proxy.restore()
        wait_for(
            lambda: _reload(job).status == JobStatus.SUCCEEDED,
            timeout=60,
            describe=lambda: _unfinished([job], worker, recovery),
        )
    assert _reload(job).attempts == 2
    assert side_effects().get("tests:runs:unsent-retry") == b"1"
