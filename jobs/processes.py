"""Process identity on this machine: a pid plus its start time, so a reused pid is not the same process.

A worker records :func:`this_process` in its registry entry. A worker that
starts later on the same host asks :func:`process_gone` whether the recorded
process still exists. Linux's ``/proc/<pid>/stat`` gives the start time (field
22, in clock ticks since boot) and ``/proc/sys/kernel/random/boot_id`` tells one
boot from the next. Where ``/proc`` is missing, nothing is ever judged gone,
and dead workers wait for the heartbeat timeout as on another host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """One process on one boot of one machine.

    Parameters:
      pid: the process id.
      started: start time in clock ticks since boot (None where ``/proc`` is missing).
      boot_id: the kernel's id of the current boot (None where ``/proc`` is missing).
    """

    pid: int
    started: int | None
    boot_id: str | None


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot; None if there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(pid=pid, started=process_start_ticks(pid), boot_id=boot_id())


def process_gone(identity: ProcessIdentity) -> bool:
    """Whether the process is certainly gone: rebooted since, no such pid, or a pid reused since.

    False when it may still run, including when this machine cannot tell (no ``/proc``)
    or the identity lacks a start time and its pid exists.
    """
    if not _PROC.is_dir() or identity.pid <= 0:
        return False
    current_boot = boot_id()
    if identity.boot_id and current_boot and identity.boot_id != current_boot:
        return True
    started = process_start_ticks(identity.pid)
    if started is None:
        return not (_PROC / str(identity.pid)).exists()
    return identity.started is not None and started != identity.started
