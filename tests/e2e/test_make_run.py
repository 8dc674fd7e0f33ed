"""`make run` (scripts/dev.py) with nothing configured: embedded Postgres and Redis, all stopped on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, free_port

pytestmark = [pytest.mark.e2e]


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (the state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    state = tmp_path / "state"
    log = tmp_path / "make-run.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTEST_XDIST_WORKER"}
    }
    env.update(
        TOOLBOXAI_STATE_DIR=str(state),
        PORT=str(free_port()),
        PROMETHEUS_PORT="0",
        DJANGO_DEBUG="1",
        DJANGO_SECURE_SSL_REDIRECT="0",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "scripts/dev.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, state, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Whatever a failed test left running (the test itself asserts there is nothing).
        subprocess.run(["pkill", "-KILL", "-f", str(state)], check=False)


def _wait_for_banner(log: Path, proc: subprocess.Popen[bytes], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Press Ctrl-C to stop." in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"make run exited with {proc.returncode}:\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"make run did not come up:\n{log.read_text(errors='replace')}")


def test_make_run_serves_on_its_own_postgres_and_redis_and_ctrl_c_stops_everything(
    make_run: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    proc, state, log = make_run
    banner = _wait_for_banner(log, proc)
    base = re.search(r"Admin:\s+(http://\S+)/admin/", banner)
    key = re.search(r"API key:\s+(tbx_\S+)", banner)
    assert base and key, banner
    assert "(embedded, .state/postgres)" in banner
    assert f"host={state / 'postgres'}" in banner or "host=/tmp/" in banner

    with httpx.Client(base_url=base.group(1), timeout=10) as client:
        assert client.get("/admin/login/").status_code == 200
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        created = client.post(
            "/api/v1/jobs/",
            json={"type": "diagnostics.echo", "payload": {"message": "hello"}},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        url = created.json()["url"]
        deadline = time.monotonic() + 60
        while client.get(url, headers=headers).json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not succeed"
            time.sleep(0.2)
        # The stream path, at the printed address: relayed to the events service.
        stream = client.get(f"{url}events/", headers=headers)
        assert stream.status_code == 200, stream.text
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert b'"status":"succeeded"' in stream.content

    assert _processes_mentioning(str(state / "postgres")), "no embedded Postgres is running"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    assert proc.wait(timeout=90) == 0

    deadline = time.monotonic() + 30
    while _processes_mentioning(str(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(state)) == []
    assert "Traceback" not in log.read_text(errors="replace")
