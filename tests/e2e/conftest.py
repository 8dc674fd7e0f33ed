"""Fixtures that run the real commands (``manage.py rundramatiq``) as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

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

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
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
