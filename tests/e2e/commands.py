"""Helpers for e2e tests that run ``manage.py`` commands to completion."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

from tests.e2e.conftest import ROOT, subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(*args: str, timeout: float = 120, **env: Any) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` against the test database and Redis; return its exit and output."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
