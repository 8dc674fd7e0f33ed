"""Helpers of the e2e tests: run ``manage.py`` commands, start workers, scrape metrics.

The fixtures that start processes (``start_command``, ``start_web``) live in
``conftest.py``; what the tests do with them more than once lives here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from jobs.transport.broker import get_broker
from tests.e2e.conftest import FAST_RECOVERY_ENV, ROOT, ManagedProcess, subprocess_env
from tests.servers import free_port

__all__ = [
    "free_port",
    "kill9",
    "manage",
    "run_manage",
    "scrape",
    "scrape_or_empty",
    "start_exporting_worker",
    "start_fast_recovery_worker",
    "start_recovery",
    "start_worker",
    "worker_ready",
]

#: What ``manage.py rundramatiq`` logs once per worker process that consumes.
READY = "Worker process is ready"


def run_manage(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` with exactly ``env``; return its exit and output."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage(*args: str, timeout: float = 120, **env: Any) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` against the test database and Redis; return its exit and output."""
    return run_manage(subprocess_env(**env), *args, timeout=timeout)


def worker_ready(
    worker: ManagedProcess, wait_for: Any, *, count: int = 1, timeout: float = 120
) -> None:
    """Wait until ``count`` of the worker's processes are ready to consume."""
    wait_for(lambda: worker.output().count(READY) >= count, timeout=timeout)


def start_worker(
    start_command: Any,
    wait_for: Any,
    *options: str,
    processes: int = 1,
    threads: int = 2,
    timeout: float = 120,
    **env: Any,
) -> ManagedProcess:
    """``manage.py rundramatiq`` with ``options``, once its processes are all ready."""
    worker: ManagedProcess = start_command(
        "rundramatiq", "--processes", str(processes), "--threads", str(threads), *options, **env
    )
    worker_ready(worker, wait_for, count=processes, timeout=timeout)
    return worker


def start_fast_recovery_worker(
    start_command: Any, wait_for: Any, *, threads: int = 4, **env: str
) -> ManagedProcess:
    """One worker process that detects lost workers fast (``FAST_RECOVERY_ENV``)."""
    settings: dict[str, Any] = {**FAST_RECOVERY_ENV, **env}
    return start_worker(start_command, wait_for, threads=threads, **settings)


def start_recovery(start_command: Any, wait_for: Any, **env: str) -> ManagedProcess:
    """``manage.py recover`` with ``FAST_RECOVERY_ENV`` (and ``env``), once its loop runs."""
    recovery: ManagedProcess = start_command("recover", **{**FAST_RECOVERY_ENV, **env})
    broker = get_broker()
    wait_for(lambda: broker.client.exists(f"{broker.namespace}:__recovery__"), timeout=60)
    return recovery


def kill9(process: ManagedProcess) -> None:
    """``kill -9`` the whole worker: the dramatiq parent and its worker processes."""
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(timeout=30)


def start_exporting_worker(
    start_command: Any, tmp_path: Path, *, processes: int, threads: int | None = None, **env: Any
) -> tuple[ManagedProcess, str]:
    """``manage.py rundramatiq`` with its metrics exporter on a free port, and the exporter's URL.

    Not waited for: the tests wait for what they need (the exporter, a ready process).
    """
    port = free_port()
    options = ["--processes", str(processes)]
    if threads is not None:
        options += ["--threads", str(threads)]
    worker: ManagedProcess = start_command(
        "rundramatiq",
        *options,
        PROMETHEUS_PORT=str(port),
        JOBS_METRICS_DIR=str(tmp_path / "metrics"),
        **env,
    )
    return worker, f"http://127.0.0.1:{port}/metrics"


def scrape(url: str, token: str | None = None) -> str:
    """The body of a GET of ``url`` (with ``token`` as a Bearer token); raises when it fails."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return str(r.read().decode())


def scrape_or_empty(url: str, token: str | None = None) -> str:
    """As :func:`scrape`, but ``""`` while nothing answers (or it answers an error)."""
    try:
        return scrape(url, token)
    except OSError:
        return ""
