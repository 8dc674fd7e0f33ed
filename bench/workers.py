"""Each system's workers: the command that starts them, readiness, stop, memory and CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import BIN, LOGS, NAMES, PY, ROOT, Config, child_env

#: The log line each worker process prints once it consumes.
READY_MARKER = {
    "a": "Worker process is ready for action.",
    "b": "Worker process is ready for action.",
    "c": " ready.",
    "d": "bench: huey worker ready",
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Workers:
    system: str
    proc: subprocess.Popen[bytes]
    log: Path
    began: float = field(default_factory=time.monotonic)


def ready_count(cfg: Config, system: str) -> int:
    return {"a": cfg.processes, "b": cfg.processes, "c": 1, "d": cfg.huey_workers}[system]


def worker_command(cfg: Config, system: str) -> list[str]:
    p, t = str(cfg.processes), str(cfg.threads)
    if system == "a":
        return [str(BIN / "dramatiq"), "bench.raw_dramatiq", "-p", p, "-t", t]
    if system == "b":
        return [PY, "manage.py", "rundramatiq", "-p", p, "-t", t]
    if system == "d":
        # Process workers are single-threaded: processes x threads of them.
        return [
            str(BIN / "huey_consumer"),
            "bench.huey_app.huey",
            "-k",
            "process",
            "-w",
            str(cfg.huey_workers),
        ]
    # Celery: one prefork pool of 8 children (as in every earlier run of this bench).
    return [
        str(BIN / "celery"),
        "-A",
        "bench.celery_app",
        "worker",
        "--pool",
        "prefork",
        "-c",
        "8",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def start_workers(cfg: Config, system: str, tag: str) -> Workers:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{tag}-{system}-workers.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            worker_command(cfg, system),
            cwd=ROOT,
            env=child_env(cfg),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers = Workers(system, proc, log)
    marker, count = READY_MARKER[system], ready_count(cfg, system)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{NAMES[system]} workers exited early; see {log}")
        if log.read_text(errors="replace").count(marker) >= count:
            return workers
        time.sleep(0.05)
    stop_workers(workers)
    raise RuntimeError(f"{NAMES[system]} workers were not ready within 120 s; see {log}")


def stop_workers(workers: Workers) -> None:
    proc = workers.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of our own process group


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) summed over a process and all its descendants, in MiB."""
    total_kb = 0
    for member in process_tree(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its threads included), in seconds."""
    with suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return 0.0
