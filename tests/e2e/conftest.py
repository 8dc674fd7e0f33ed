"""Fixtures that run the real commands (``manage.py rundramatiq``) as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that shares this test's database and Redis."""
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"postgres://{user}{password}@{host}:{port}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        PYTHONUNBUFFERED="1",
        JOBS_WORKER_POLL_MS="20",
        # No worker metrics exporter unless a test asks for one (on a free port).
        PROMETHEUS_PORT="0",
    )
    env.update(extra)
    return env


class ManagedProcess:
    """A ``manage.py`` subprocess whose output goes to a log file the test can read."""

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str], *, argv: list[str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv or [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the main process, as a supervisor would; kill the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_command(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Start ``manage.py <args>``; every process started is stopped after the test."""
    started: list[ManagedProcess] = []

    def _start(*args: str, **env: Any) -> ManagedProcess:
        name = "-".join(a.strip("-") for a in args[:1]) or "manage"
        process = ManagedProcess(
            list(args), tmp_path / f"{name}-{len(started)}.log", subprocess_env(**env)
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        process.stop()


@dataclass
class WebServer:
    """A live web server subprocess and its base URL."""

    process: ManagedProcess
    url: str


#: The production web command (docs/deployment.md, docker-compose): gunicorn's threaded WSGI workers
#: (gunicorn.conf.py, read from the working directory).
#: ``asgi=True``: the ASGI alternative docs/deployment.md names for many concurrent event streams.
def gunicorn_argv(port: int, *, asgi: bool = False) -> list[str]:
    app = (
        ["toolboxai.asgi:application", "-k", "uvicorn_worker.UvicornWorker"]
        if asgi
        else ["toolboxai.wsgi:application"]
    )
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        *app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
    ]


@pytest.fixture
def start_web(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Start the production web command on a free port and wait until /healthz answers."""
    started: list[ManagedProcess] = []

    def _start(*, asgi: bool = False, **env: Any) -> WebServer:
        port = free_port()
        process = ManagedProcess(
            [],
            tmp_path / f"web-{len(started)}.log",
            subprocess_env(**env),
            argv=gunicorn_argv(port, asgi=asgi),
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return WebServer(process=process, url=url)
            except httpx.HTTPError:
                pass
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the web server did not start:\n{process.output()}")
            time.sleep(0.2)

    yield _start
    for process in started:
        process.stop()


#: Settings that make failure detection fast in fault-injection tests.
FAST_RECOVERY_ENV = {
    "JOBS_HEARTBEAT_TIMEOUT_MS": "2000",
    "JOBS_RECOVERY_INTERVAL_MS": "200",
    "JOBS_OUTBOX_GRACE_MS": "500",
    "JOBS_WORKER_SHUTDOWN_TIMEOUT_MS": "5000",
    "dramatiq_restart_delay": "300",
}


@pytest.fixture
def broker_on(broker: Any) -> Iterator[Callable[[str], Any]]:
    """Point this process's global broker (submissions, ``get_broker``) at another Redis."""
    from django.test import override_settings

    from jobs.broker import setup

    overrides: list[Any] = []

    def _switch(url: str) -> Any:
        override = override_settings(REDIS_URL=url)
        override.enable()
        overrides.append(override)
        return setup()

    yield _switch
    for override in reversed(overrides):
        override.disable()
    setup()
