"""A soak of N jobs over two 8-thread workers, web and scheduler, on private servers, with a fault.

:class:`Deployment` runs the real processes (gunicorn, ``manage.py periodiq``,
two ``manage.py rundramatiq -p 1 -t 8``) against the Postgres and Redis a
scenario gives it. :func:`run_soak` submits the jobs (``tests.chaos``, a tenth
of them delayed), calls the scenario's fault once ``fault_at`` of them have
succeeded, waits for the rest, and reads the outcome from the ledger and from
a side-effect store no scenario touches (:class:`SoakResult`). Nothing here
imports the ``jobs`` package: the processes under test are subprocesses, and
the ledger is read with SQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.servers import Process, RedisServer, wait_until

ROOT = Path(__file__).resolve().parents[2]

#: Fast enough relays and recovery passes for a run of seconds; the heartbeat
#: timeout stays at its production value, longer than any fault, so no live worker
#: is taken for dead.
APP_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.settings",
    "TOOLBOXAI_TEST_REDIS_FIXED": "1",
    "PYTHONUNBUFFERED": "1",
    "PROMETHEUS_PORT": "0",
    "JOBS_RECOVERY_INTERVAL_MS": "1000",
    "JOBS_OUTBOX_GRACE_MS": "2000",
    "JOBS_WORKER_SHUTDOWN_TIMEOUT_MS": "10000",
    "API_UNAVAILABLE_RETRY_AFTER_SECONDS": "2",
}

#: What a process logs when it loses Postgres or Redis, and when it has it back (jobs.outages).
LOST_LINE = "is unreachable ("
BACK_LINE = "is reachable again after"


def app_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBS_", "PYTEST_", "REDIS_", "CHAOS_"))
        and k not in ("DATABASE_URL", "TOOLBOXAI_TEST_REDIS_FIXED")
    }
    env.update(APP_ENV)
    env.update(extra)
    return env


@dataclass
class Deployment:
    """The processes under test, their logs under ``directory``.

    Parameters:
      directory: where logs go.
      env: settings of web and scheduler (DATABASE_URL, REDIS_URL or Sentinels).
      worker_env: settings of the workers, when they reach the servers another way
        (through a proxy); defaults to ``env``.
      workers: worker processes, ``rundramatiq -p 1 -t 8`` each.
    """

    directory: Path
    env: dict[str, str]
    worker_env: dict[str, str] | None = None
    workers: int = 2
    processes: dict[str, Process] = field(default_factory=dict)
    web_url: str = ""

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr}"
        return result.stdout

    def start(self, web_port: int) -> None:
        self._spawn("scheduler", [sys.executable, "manage.py", "periodiq"], self.env)
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self._spawn(
            "web",
            [gunicorn, "toolboxai.wsgi:application", "--bind", f"127.0.0.1:{web_port}", "-w", "1"],
            self.env,
        )
        for i in range(self.workers):
            argv = [sys.executable, "manage.py", "rundramatiq", "-p", "1", "-t", "8"]
            self._spawn(f"worker-{i}", argv, self.worker_env or self.env)
        self.web_url = f"http://127.0.0.1:{web_port}"
        for name, process in self.processes.items():
            if name.startswith("worker"):
                wait_until(_ready(process), timeout=180, what=f"{name} starting")
                assert process.alive(), process.output()
        wait_until(self._web_ready, timeout=120, what="the web server answering")

    def _web_ready(self) -> bool:
        assert self.processes["web"].alive(), self.processes["web"].output()
        try:
            return httpx.get(f"{self.web_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.processes[name] = Process(
            argv, log_path=self.directory / f"{name}.log", env=env, cwd=ROOT
        )

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if not p.alive()]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=30)


def _ready(process: Process) -> Callable[[], bool]:
    return lambda: "Worker process is ready" in process.output() or not process.alive()


SUBMIT = """
import json, sys
from datetime import timedelta
from django.contrib.auth import get_user_model
from jobs.services import JobRequest, job_submit_many
from tenants.models import Organization, Role
from tenants.services import api_key_create, membership_ensure

spec = json.loads(SPEC)
org, _ = Organization.objects.get_or_create(
    slug="chaos", defaults={"name": "Chaos", "max_concurrent_jobs": spec["cap"],
                            "max_submissions_per_minute": 1000000})
user, _ = get_user_model().objects.get_or_create(username="chaos-member")
key = api_key_create(membership=membership_ensure(user=user, organization=org, role=Role.MEMBER))
requests = [
    JobRequest(
        job_type="tests.chaos",
        payload={"key": f"k{i}", "sleep_seconds": spec["sleep"]},
        delay=timedelta(seconds=2 + i % 3) if i % 10 == 0 else None,
    )
    for i in range(spec["jobs"])
]
for start in range(0, len(requests), 500):
    job_submit_many(requests=requests[start:start + 500], organization=org)
print(json.dumps({"key": key.raw}))
"""


@dataclass
class SoakResult:
    """What a scenario's soak ended with (see :func:`run_soak`).

    Parameters:
      scenario: its name.
      jobs: jobs submitted.
      exactly_once: jobs with one succeeded attempt, status succeeded and one side effect.
      doubles: jobs with more than one succeeded attempt or side effect.
      lost: jobs that did not succeed (missing, failed, still waiting).
      stuck: jobs left ``running``.
      delayed_early: delayed jobs that started before their time.
      recovery_seconds: from the end of the fault to the first second at full throughput.
      refused: probes answered 503 with Retry-After during the fault.
      half_made: probes refused during the fault whose job exists anyway.
      dead_processes: processes that exited.
      silent_processes: processes that logged losing a server and not having it back.
      noticed: processes that logged losing a server, then having it back.
      seconds: the whole run.
    """

    scenario: str
    jobs: int
    exactly_once: int = 0
    doubles: int = 0
    lost: int = 0
    stuck: int = 0
    delayed_early: int = 0
    recovery_seconds: float | None = None
    refused: int = 0
    half_made: int = 0
    dead_processes: list[str] = field(default_factory=list)
    silent_processes: list[str] = field(default_factory=list)
    noticed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            self.exactly_once == self.jobs
            and not (self.doubles or self.lost or self.stuck or self.delayed_early)
            and not (self.half_made or self.dead_processes or self.silent_processes)
            and not self.notes
        )


@dataclass
class Fault:
    """A scenario's fault: ``inject(probe, reached)`` runs it (blocking) and returns when it ends.

    ``probe()`` submits one job over HTTP and records the answer; a fault calls
    it while the service is down. ``reached(fraction)`` waits until that share of
    the jobs has succeeded (for a fault in several steps).
    """

    name: str
    inject: Callable[[Callable[[], None], Callable[[float], None]], None]
    fault_at: float = 0.3
    expect_refusals: bool = False


class Prober:
    """Submits single jobs over HTTP during a fault; remembers refused ones."""

    def __init__(self, deployment: Deployment, api_key: str) -> None:
        self.url = f"{deployment.web_url}/api/v1/jobs/"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.refused: list[str] = []
        self.answers: list[int] = []

    def __call__(self) -> None:
        marker = f"probe-{uuid.uuid4().hex}"
        body = {"type": "diagnostics.echo", "payload": {"message": marker}}
        try:
            response = httpx.post(self.url, json=body, headers=self.headers, timeout=30)
        except httpx.HTTPError:
            self.answers.append(0)
            return
        self.answers.append(response.status_code)
        if response.status_code == 503 and response.headers.get("Retry-After"):
            self.refused.append(marker)

    def accepted_after(self, deadline_seconds: float) -> bool:
        """Submit after the fault until one is accepted, as a client honouring Retry-After would."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            body = {"type": "diagnostics.echo", "payload": {"message": "after the fault"}}
            try:
                response = httpx.post(self.url, json=body, headers=self.headers, timeout=30)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 201:
                return True
            time.sleep(1)
        return False


def run_soak(
    *,
    deployment: Deployment,
    ledger_url: str,
    effects: RedisServer,
    fault: Fault,
    jobs: int,
    sleep_seconds: float,
    deadline_seconds: float,
) -> SoakResult:
    """Submit ``jobs``, inject ``fault`` mid-run, wait, and judge the outcome."""
    result = SoakResult(scenario=fault.name, jobs=jobs)
    started = time.monotonic()
    spec = json.dumps({"jobs": jobs, "sleep": sleep_seconds, "cap": 12})
    out = deployment.manage(
        "shell", "--no-imports", "-c", f"SPEC = {spec!r}\n" + SUBMIT, env=deployment.env
    )
    api_key = json.loads(out.strip().splitlines()[-1])["key"]
    prober = Prober(deployment, api_key)
    conn: list[psycopg.Connection[Any]] = []

    def succeeded() -> int:
        """Jobs succeeded so far (0 while the ledger cannot be read, as during an outage)."""
        try:
            if not conn:
                conn.append(psycopg.connect(ledger_url, autocommit=True, connect_timeout=3))
            row = (
                conn[0]
                .execute(
                    "SELECT count(*) FROM jobs_job WHERE job_type = 'tests.chaos' "
                    "AND status = 'succeeded'"
                )
                .fetchone()
            )
        except psycopg.Error:
            if conn:
                conn.pop().close()
            return 0
        return int(row[0]) if row else 0

    def reached(fraction: float) -> None:
        wait_until(lambda: succeeded() >= jobs * fraction, timeout=deadline_seconds, what="work")

    reached(fault.fault_at)
    fault_started = time.time()
    fault.inject(prober, reached)
    fault_ended = time.time()
    if not prober.accepted_after(120):
        result.notes.append("no submission was accepted after the fault")
    deadline = time.monotonic() + deadline_seconds
    while succeeded() < jobs and time.monotonic() < deadline:
        time.sleep(0.5)
    for c in conn:
        c.close()
    ledger = _connect_retrying(ledger_url)
    result.seconds = round(time.monotonic() - started, 1)
    _judge(result, ledger, effects, prober, fault, fault_started, fault_ended)
    ledger.close()
    result.dead_processes = deployment.dead()

    def silent() -> list[str]:
        return [
            name
            for name, process in deployment.processes.items()
            if process.output().rfind(LOST_LINE) > process.output().rfind(BACK_LINE)
        ]

    with contextlib.suppress(AssertionError):  # give a process a moment to notice
        wait_until(lambda: not silent(), timeout=30, what="every process back")
    for name, process in deployment.processes.items():
        text = process.output()
        if text.rfind(LOST_LINE) > text.rfind(BACK_LINE):
            result.silent_processes.append(name)
        elif LOST_LINE in text:
            result.noticed.append(name)
    return result


def _connect_retrying(url: str) -> psycopg.Connection[Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _judge(
    result: SoakResult,
    ledger: psycopg.Connection[Any],
    effects: RedisServer,
    prober: Prober,
    fault: Fault,
    fault_started: float,
    fault_ended: float,
) -> None:
    rows = ledger.execute(
        """
        SELECT j.id::text, j.payload->>'key', j.status, j.scheduled_for,
               (SELECT count(*) FROM jobs_jobattempt a
                 WHERE a.job_id = j.id AND a.outcome = 'succeeded'),
               (SELECT min(a.started_at) FROM jobs_jobattempt a WHERE a.job_id = j.id),
               extract(epoch FROM j.finished_at)
          FROM jobs_job j WHERE j.job_type = 'tests.chaos'
        """
    ).fetchall()
    counts = {k.decode(): int(v) for k, v in effects.client(db=1).hgetall("chaos:effects").items()}
    keys: dict[str, int] = {}
    finished: list[float] = []
    not_succeeded: dict[str, list[str]] = {}
    for job_id, key, status, scheduled_for, wins, first_start, finished_at in rows:
        keys[key] = keys.get(key, 0) + 1
        runs = counts.get(job_id, 0)
        if status == "succeeded" and wins == 1 and runs == 1:
            result.exactly_once += 1
        if wins > 1 or runs > 1:
            result.doubles += 1
        if status == "running":
            result.stuck += 1
        elif status != "succeeded":
            result.lost += 1
            not_succeeded.setdefault(status, []).append(job_id)
        if scheduled_for is not None:
            if first_start is not None and first_start < scheduled_for:
                result.delayed_early += 1
        elif finished_at is not None and status == "succeeded":
            finished.append(float(finished_at))
    result.lost += result.jobs - len(keys)
    for status, ids in sorted(not_succeeded.items()):
        # What a failure report needs to find the jobs in the logs.
        result.notes.append(f"{len(ids)} {status}: {', '.join(ids[:5])}")
    duplicates = sum(n - 1 for n in keys.values() if n > 1)
    if duplicates:
        result.notes.append(f"{duplicates} duplicate submissions")
    result.refused = len(prober.refused)
    if prober.refused:
        made = ledger.execute(
            "SELECT count(*) FROM jobs_job WHERE payload->>'message' = ANY(%s)",
            [prober.refused],
        ).fetchone()
        result.half_made = int(made[0]) if made else 0
    if fault.expect_refusals and not prober.refused:
        result.notes.append(f"no probe was refused with 503 + Retry-After: {prober.answers}")
    result.recovery_seconds = full_throughput_after(finished, fault_started, fault_ended)


def full_throughput_after(
    finished: list[float], fault_started: float, fault_ended: float
) -> float | None:
    """Seconds from the end of the fault to the first 1 s window at 80 % of the rate before it.

    The rate before is the mean rate from the first completion to the fault (over at
    least 1 s). None when there is too little before or after to tell.
    """
    before = sorted(t for t in finished if t < fault_started)
    after = sorted(t for t in finished if t >= fault_ended)
    if len(before) < 5 or not after:
        return None
    span = fault_started - before[0]
    if span <= 0:
        return None
    baseline = len(before) / max(1.0, span)
    for t in after:
        in_window = sum(1 for u in after if t <= u < t + 1)
        if in_window >= 0.8 * baseline:
            return round(max(0.0, t - fault_ended), 1)
    return None
