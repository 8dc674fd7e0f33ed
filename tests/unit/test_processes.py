"""Process identity: a pid with its start time, so pid reuse is not mistaken for liveness."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.processes import ProcessIdentity, boot_id, process_gone, process_start_ticks, this_process


def test_this_process_is_not_gone() -> None:
    me = this_process()

    assert me.pid == os.getpid()
    assert me.started is not None and me.boot_id
    assert process_gone(me) is False


def test_an_exited_process_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_ticks(child.pid)
    child.wait()

    assert process_gone(ProcessIdentity(pid=child.pid, started=started, boot_id=boot_id()))
    assert process_gone(ProcessIdentity(pid=child.pid, started=None, boot_id=None))


def test_a_pid_now_held_by_a_later_process_is_gone() -> None:
    me = this_process()
    assert me.started is not None

    assert process_gone(ProcessIdentity(pid=me.pid, started=me.started - 1, boot_id=me.boot_id))


def test_a_process_of_an_earlier_boot_is_gone_even_if_its_pid_and_start_match() -> None:
    me = this_process()

    assert process_gone(ProcessIdentity(pid=me.pid, started=me.started, boot_id="another-boot"))


def test_a_live_pid_without_a_recorded_start_time_counts_as_alive() -> None:
    assert process_gone(ProcessIdentity(pid=os.getpid(), started=None, boot_id=None)) is False


def test_the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses(
    tmp_path: Path,
) -> None:
    odd_name = tmp_path / "a) (b c"
    odd_name.symlink_to(shutil.which("sleep") or "/bin/sleep")
    child = subprocess.Popen([str(odd_name), "30"])
    try:
        started = process_start_ticks(child.pid)

        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "a) (b c"
        assert started is not None
        assert started >= (this_process().started or 0)
        assert not process_gone(ProcessIdentity(pid=child.pid, started=started, boot_id=boot_id()))
    finally:
        child.kill()
        child.wait()
