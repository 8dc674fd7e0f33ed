"""An event stream compares each new read of its job with what it last showed."""

from __future__ import annotations

import json
import uuid
from typing import Any

from jobs.api.streaming import JobEventTracker
from jobs.models import Job


def _tracker() -> JobEventTracker:
    return JobEventTracker(
        job_id=uuid.uuid4(),
        organization_id=1,
        render_job=lambda job: {"status": job.status, "progress": job.progress},
    )


def _row(status: str, attempts: int, progress: int = 0, message: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "attempts": attempts,
        "progress": progress,
        "progress_message": message,
    }


def _events(frames: list[bytes]) -> list[tuple[str, Any]]:
    out = []
    for frame in frames:
        fields = dict(line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line)
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_a_status_event_read_after_its_snapshot_sets_what_the_next_read_is_compared_with() -> None:
    tracker = _tracker()
    # The snapshot saw the job queued; by the time the whole job was read it ran and
    # reported 50 %. The status event shows the latter.
    shown = Job(status="running", attempts=1, progress=50, progress_message="half")
    first = _events(tracker.frames(_row("queued", 0), shown))
    assert first == [("status", {"status": "running", "progress": 50})]

    # The next read finds what the event showed: nothing new, no second status event.
    assert not tracker.needs_full(_row("running", 1, 50, "half"))
    assert tracker.frames(_row("running", 1, 50, "half"), None) == []

    # A later report is a progress event.
    later = _events(tracker.frames(_row("running", 1, 80, "most"), None))
    assert [name for name, _ in later] == ["progress"]
    assert later[0][1]["progress"] == 80
