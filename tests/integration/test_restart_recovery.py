"""Which of a host's workers a starting worker recovers: by host, pid and the pid's start time.

Each "worker" here is a registry entry and an open attempt in the ledger,
what a ``kill -9``'d process leaves behind; the processes are real ones of
this machine (this test's own, or a child that has exited).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from django.test import override_settings

from jobs.models import AttemptOutcome, JobAttempt, JobStatus
from jobs.processes import boot_id, process_start_ticks, this_process
from jobs.services import job_submit
from jobs.services.restart_recovery import host_dead_workers_recover
from jobs.services.transitions import StartVerdict, job_attempt_start
from jobs.transport.broker import JobsRedisBroker
from jobs.transport.workers import workers_key

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOST = "restart-host"


def _exited_pid() -> tuple[int, int | None]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_ticks(child.pid)
    child.wait()
    return child.pid, started


def _worker(
    broker: JobsRedisBroker, *, host: str, pid: int, started: Any, registered: bool = True
) -> tuple[str, str]:
    """A worker process with one job running on it: (its broker id, the job id)."""
    broker_id = uuid.uuid4().hex
    if registered:
        entry = {"broker_id": broker_id, "host": host, "pid": pid, "pid_started": started}
        entry["boot_id"] = boot_id()
        broker.client.hset(workers_key(broker.namespace), broker_id, json.dumps(entry))
    job = job_submit(job_type="tests.count", payload={"key": broker_id}).job
    decision = job_attempt_start(job_id=str(job.pk), worker_id=f"{host}:{pid}:{broker_id}")
    assert decision.verdict == StartVerdict.RUN
    return broker_id, str(job.pk)


def _outcome(job_id: str) -> tuple[str, str]:
    attempt = JobAttempt.objects.select_related("job").get(job_id=job_id, number=1)
    return attempt.outcome, attempt.job.status


@override_settings(JOBS_WORKER_HOST=HOST)
def test_a_starting_worker_recovers_only_its_hosts_workers_that_are_gone(
    broker: JobsRedisBroker,
) -> None:
    me = this_process()
    pid, started = _exited_pid()
    exited, exited_job = _worker(broker, host=HOST, pid=pid, started=started)
    reused, reused_job = _worker(broker, host=HOST, pid=me.pid, started=(me.started or 0) - 1)
    unregistered, unregistered_job = _worker(
        broker, host=HOST, pid=pid, started=None, registered=False
    )
    _alive, alive_job = _worker(broker, host=HOST, pid=me.pid, started=me.started)
    _elsewhere, elsewhere_job = _worker(broker, host="another-host", pid=pid, started=started)

    report = host_dead_workers_recover(broker)

    assert sorted(w.broker_id for w in report.workers) == sorted([exited, reused, unregistered])
    for job_id in (exited_job, reused_job, unregistered_job):
        assert _outcome(job_id) == (AttemptOutcome.LOST, JobStatus.RETRYING)
    for job_id in (alive_job, elsewhere_job):
        assert _outcome(job_id) == ("", JobStatus.RUNNING)
    assert broker.client.hget(workers_key(broker.namespace), exited) is None
    assert host_dead_workers_recover(broker).workers == [], "a second look finds nothing"
