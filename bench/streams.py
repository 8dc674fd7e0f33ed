"""The "1,000 concurrent streams" row: one events-service process holds N event streams.

Starts the events service (``gunicorn toolboxai.asgi:application -k
uvicorn_worker.UvicornWorker``, one process) and the threaded web server on
the bench database, opens N streams (one per running job, each over its own
connection), then has every job report its progress a few times through the
worker's own call (``current_job().progress()``, :class:`jobs.runtime.JobContext`)
while a client lists jobs on the web server. It reports the streams held
to the end, the latency from each progress call to its ``progress`` event
at the client (p50, p99), the list's p95 meanwhile, and the events process's
memory per stream (its resident memory with N streams open, less before).

    python -m bench.streams [--streams 1000] [--reports 5]

``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/tbx_bench``;
created and migrated when missing; its job table is **truncated**) and
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/8``; **flushed**).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOGS = ROOT / "bench" / "results" / "logs"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
#: Settings of every process here: production mode, caps above the streams opened.
ENV = {
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "DJANGO_SETTINGS_MODULE": "toolboxai.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-streams-" + "x" * 40,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "LOG_LEVEL": "WARNING",
    "PROMETHEUS_PORT": "0",
    "API_EVENTS_MAX_STREAMS_PER_KEY": "100000",
    "API_EVENTS_MAX_STREAMS_PER_ORGANIZATION": "100000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup(streams: int) -> tuple[str, list[str]]:
    """Migrate, flush, and create an organization, its API key and ``streams`` running jobs."""
    from django.core.management import call_command
    from django.db import connection

    from jobs.models import Job, JobStatus
    from jobs.transport.broker import get_broker
    from tenants.models import Membership, Organization, Role
    from tenants.services import api_key_create

    call_command("migrate", verbosity=0)
    get_broker().client.flushdb()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_job CASCADE")
    org, _ = Organization.objects.get_or_create(slug="bench-streams", defaults={"name": "Streams"})
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-streams")
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=org, defaults={"role": Role.OWNER}
    )
    key = api_key_create(membership=membership, name=f"bench {uuid.uuid4().hex[:6]}").raw
    now = datetime.now(UTC)
    jobs = [
        Job(
            id=uuid.uuid4(),
            organization=org,
            job_type="diagnostics.echo",
            queue="default",
            payload={"message": "stream"},
            status=JobStatus.RUNNING,
            attempts=1,
            started_at=now,
        )
        for _ in range(streams)
    ]
    Job.objects.bulk_create(jobs, batch_size=1000)
    return key, [str(job.pk) for job in jobs]


@contextmanager
def server(argv: list[str], name: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"streams-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env={**os.environ, **ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within 90 s; see {log}")
            time.sleep(0.2)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pid(master: int) -> int:
    """The gunicorn master's one worker process."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("the events service has no worker process")


class Streams:
    """N SSE clients over raw sockets, recording when each progress event arrives."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.received: dict[tuple[str, int], float] = {}
        self.open = 0
        self.refused: list[int] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def open_one(self, job_id: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET /api/v1/jobs/{job_id}/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            self.refused.append(status)
            writer.close()
            return
        self.open += 1
        self.writers.append(writer)
        asyncio.get_running_loop().create_task(self.follow(job_id, reader))

    async def follow(self, job_id: str, reader: asyncio.StreamReader) -> None:
        event = ""
        try:
            while line := await reader.readline():
                text = line.decode(errors="replace")
                if "event: " in text:
                    event = text.split("event: ", 1)[1].strip()
                elif "data: " in text and event == "progress":
                    data = json.loads(text.split("data: ", 1)[1])
                    self.received[(job_id, int(data["progress"]))] = time.time()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        self.open -= 1

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def list_p95(port: int, key: str, stop: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        began = time.perf_counter()
        conn.request("GET", "/api/v1/jobs/", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /api/v1/jobs/ answered {response.status}")
        out.append((time.perf_counter() - began) * 1000)


def report_progress(job_ids: list[str], percent: int, sent: dict[tuple[str, int], float]) -> None:
    """What a job's own ``current_job().progress()`` does, for each job (the ledger, then a notice)."""
    from django.db import close_old_connections

    from jobs.runtime import JobContext

    for job_id in job_ids:
        ctx = JobContext(
            job_id=job_id, job_type="diagnostics.echo", organization_id=None, attempt=1, retries=0
        )
        sent[(job_id, percent)] = time.time()
        ctx.progress(percent)
    close_old_connections()


def measure(streams: int, reports: int) -> dict[str, Any]:
    from bench.links import round_trips

    key, job_ids = setup(streams)
    gunicorn = str(BIN / "gunicorn")
    events_argv = [gunicorn, "toolboxai.asgi:application", "-k", "uvicorn_worker.UvicornWorker"]
    web_argv = [gunicorn, "toolboxai.wsgi:application", "--workers", str(os.cpu_count() or 2)]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "streams_asked": streams,
        "load_before": list(os.getloadavg()),
        **round_trips(DATABASE_URL, REDIS_URL),
    }
    with (
        server([*events_argv, "--workers", "1"], "events") as (events_port, events_proc),
        server(web_argv, "web") as (web_port, _web),
    ):
        pid = worker_pid(events_proc.pid)
        warm = Streams(events_port, key)  # one stream first: every import and pool is warm

        async def run() -> dict[str, Any]:
            await warm.open_one(job_ids[0])
            await asyncio.sleep(1)
            rss_before = rss_kib(pid)
            clients = Streams(events_port, key)
            began = time.monotonic()
            for start in range(1, streams, 50):
                await asyncio.gather(*[clients.open_one(j) for j in job_ids[start : start + 50]])
            opened_in = time.monotonic() - began
            await asyncio.sleep(2)
            rss_after = rss_kib(pid)
            stop, list_ms = threading.Event(), list[float]()
            lister = threading.Thread(
                target=list_p95, args=(web_port, key, stop, list_ms), daemon=True
            )
            lister.start()
            sent: dict[tuple[str, int], float] = {}
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(max_workers=8) as pool:
                for n in range(1, reports + 1):
                    chunks = [job_ids[i::8] for i in range(8)]
                    await asyncio.gather(
                        *[
                            loop.run_in_executor(pool, report_progress, c, n * 10, sent)
                            for c in chunks
                        ]
                    )
                    await asyncio.sleep(1)
            await asyncio.sleep(2)
            stop.set()
            lister.join(timeout=30)
            held = clients.open + warm.open
            clients.close()
            warm.close()
            latencies = sorted(
                (clients.received.get(k) or warm.received.get(k, 0.0)) - t
                for k, t in sent.items()
                if k in clients.received or k in warm.received
            )
            return {
                "streams_held": held,
                "refused": len(clients.refused),
                "opened_in_s": opened_in,
                "progress_calls": len(sent),
                "progress_received": len(latencies),
                "latency_p50_ms": 1000 * statistics.median(latencies),
                "latency_p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
                "list_requests": len(list_ms),
                "list_p95_ms": statistics.quantiles(list_ms, n=20)[-1],
                "rss_before_mib": rss_before / 1024,
                "rss_after_mib": rss_after / 1024,
                "kib_per_stream": (rss_after - rss_before) / max(1, streams - 1),
            }

        out.update(asyncio.run(run()))
    out["load_after"] = list(os.getloadavg())
    return out


def run_streams(streams: int = 1000, reports: int = 5) -> dict[str, Any]:
    """Measure in a child process (its own Django settings), and return its figures."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.streams",
            "--json",
            "--streams",
            str(streams),
            "--reports",
            str(reports),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.streams failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=5, help="progress reports per job")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    ns = parser.parse_args()
    for name, value in ENV.items():
        os.environ[name] = value
    ensure_database()
    import django

    django.setup()
    result = measure(ns.streams, ns.reports)
    if ns.json:
        print(json.dumps(result))
    else:
        from bench.report import STREAMS_HEADER, streams_row

        print(json.dumps(result, indent=2))
        print("\n".join([*STREAMS_HEADER, streams_row(result)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
