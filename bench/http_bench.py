"""B's HTTP rows: the API under gunicorn as deployed, and the same server's /healthz floor."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from bench.config import BIN, LOGS, ROOT, Config, child_env

#: Untimed requests each HTTP client sends before the timed ones.
HTTP_WARMUP_REQUESTS = 25
HTTP_CLIENTS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def web_server(cfg: Config, tag: str) -> Iterator[int]:
    """The production web server: gunicorn's threaded WSGI workers (one per core; gunicorn.conf.py)."""
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{tag}-b-web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "toolboxai.wsgi:application",
                "--workers",
                str(os.cpu_count() or 2),
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=child_env(cfg),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {log}")
            try:
                http_call(port, "GET", "/healthz", None, None)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any,
    key: str | None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            c.close()


def concurrent(
    port: int, method: str, path: str, body: Any, key: str | None, total: int, ok: int
) -> dict[str, Any]:
    """``total`` requests from 8 concurrent keep-alive clients, timed once all are warm.

    Each client first sends HTTP_WARMUP_REQUESTS untimed, as the Python loops send one
    untimed job: the web threads open their Postgres and Redis connections then, which
    a running server has done long before.
    """
    per_client = total // HTTP_CLIENTS
    counts: list[Counter[int]] = [Counter() for _ in range(HTTP_CLIENTS)]
    warm = threading.Barrier(HTTP_CLIENTS + 1)

    def run(i: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(HTTP_WARMUP_REQUESTS):
            with suppress(OSError, http.client.HTTPException):
                http_call(port, method, path, body, key, c)
        warm.wait()
        warm.wait()  # all clients start the timed part together
        for _ in range(per_client):
            try:
                st, _ = http_call(port, method, path, body, key, c)
            except (OSError, http.client.HTTPException):
                st = 0
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            counts[i][st] += 1
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(HTTP_CLIENTS)]
    for t in threads:
        t.start()
    warm.wait()  # every client is warm
    began = time.perf_counter()
    warm.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    merged: Counter[int] = sum(counts, Counter())
    good = merged.get(ok, 0)
    return {"n": good, "seconds": elapsed, "rate": good / elapsed, "statuses": dict(merged)}


def http_bench(cfg: Config, port: int, key: str) -> dict[str, Any]:
    job = {"type": "diagnostics.echo", "payload": {"message": "bench"}, "priority": 5}
    status, body = http_call(port, "POST", "/api/v1/jobs/", job, key)
    if status == 404:
        return {"available": False, "reason": "n/a (API not available)"}
    if status != 201:
        return {
            "available": False,
            "reason": f"POST /api/v1/jobs/ answered {status}: {body[:200]!r}",
        }
    out: dict[str, Any] = {"available": True}

    # Batch: 1,000 jobs per request, one client.
    batches = max(1, cfg.bulk_jobs // 1_000)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    statuses: Counter[int] = Counter()
    began = time.perf_counter()
    for _ in range(batches):
        status, _ = http_call(
            port, "POST", "/api/v1/jobs/batch/", {"jobs": [job] * 1_000}, key, conn
        )
        statuses[status] += 1
    elapsed = time.perf_counter() - began
    conn.close()
    ok = statuses.get(201, 0) * 1_000
    out["batch"] = {"n": ok, "seconds": elapsed, "rate": ok / elapsed, "statuses": dict(statuses)}

    # Single: 8 concurrent keep-alive clients; then the same clients against /healthz,
    # the floor of the server (gunicorn, Django's middleware, no database or Redis).
    out["single"] = concurrent(port, "POST", "/api/v1/jobs/", job, key, cfg.http_single, 201)
    out["healthz"] = concurrent(port, "GET", "/healthz", None, None, cfg.http_single, 200)
    return out
