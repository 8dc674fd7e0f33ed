"""The Server-Sent Events stream of one job: status, progress and partial results.

It replays the job's current state first, then follows the ledger row by
polling it (every API_EVENTS_POLL_MS) and forwards the partial results that
workers publish on the job's Redis pub/sub channel (``jobs.transport.events``). It
closes once the job finishes. Workers write nothing extra for it.

There are two drivers over one :class:`JobEventTracker`: the plain generator
here for WSGI servers (gunicorn's threads, ``manage.py runserver``), and
:func:`jobs.api.streaming_async.stream_watched` for the ASGI events service
(gunicorn with uvicorn workers), because Django buffers a stream whose
iterator does not match the server's kind.

A stream holds slots (``jobs.api.stream_slots``), taken before it starts and
freed when it ends. A heartbeat every API_EVENTS_HEARTBEAT_SECONDS renews
their leases and notices a client that has gone: the write fails, which ends
the stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from django.db import close_old_connections

from jobs.api.stream_slots import StreamHold
from jobs.conf import jobs_settings
from jobs.models import FINISHED_STATUSES, Job
from jobs.redaction import redact, redact_text
from jobs.selectors.jobs import STREAM_FIELDS, job_for_stream, job_stream_snapshot
from jobs.transport.events import CHANGED

logger = logging.getLogger(__name__)

#: How long a client waits before reconnecting after the stream ends early, in ms.
RECONNECT_MS = 2000
# A heartbeat is a comment line and, one poll later, the blank line after it: two
# writes, because TCP takes the first write after the client has gone (the client
# answers it with a reset) and refuses the second, which ends the stream.
HEARTBEAT = b": heartbeat\n"
HEARTBEAT_END = b"\n"


def sse_frame(event: str, data: Any) -> bytes:
    """One SSE frame; JSON never contains a raw newline, so one data line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class JobEventTracker:
    """Turns ledger snapshots and pub/sub messages into SSE frames.

    Parameters:
      job_id: the job followed.
      organization_id: its organization; the row is always read with it.
      render_job: the job's full API representation (for status events).
    """

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        organization_id: int,
        render_job: Callable[[Job], dict[str, Any]],
    ) -> None:
        self.job_id = job_id
        self.organization_id = organization_id
        self.render_job = render_job
        self._last: dict[str, Any] | None = None
        self.finished = False

    def snapshot(self) -> dict[str, Any] | None:
        return job_stream_snapshot(job_id=self.job_id, organization_id=self.organization_id)

    def full(self) -> Job | None:
        return job_for_stream(job_id=self.job_id, organization_id=self.organization_id)

    def needs_full(self, row: dict[str, Any] | None) -> bool:
        """Whether a status event (the whole job) is due for this snapshot."""
        if row is None:
            return False
        return self._last is None or (row["status"], row["attempts"]) != (
            self._last["status"],
            self._last["attempts"],
        )

    def frames(self, row: dict[str, Any] | None, job: Job | None) -> list[bytes]:
        """Frames for a new snapshot; ``job`` is the full row when ``needs_full``."""
        if row is None:
            self.finished = True
            return [sse_frame("gone", {"id": str(self.job_id)})]
        out: list[bytes] = []
        if job is not None:
            out.append(sse_frame("status", self.render_job(job)))
            # Compare later reads with what this event showed: the job was read after
            # ``row`` and may be newer (running and reporting progress by now).
            row = {field: getattr(job, field) for field in STREAM_FIELDS}
        elif self._last is not None and (row["progress"], row["progress_message"]) != (
            self._last["progress"],
            self._last["progress_message"],
        ):
            out.append(
                sse_frame(
                    "progress",
                    {
                        "id": str(self.job_id),
                        "progress": row["progress"],
                        # Redacted as in the job's API representation (status events).
                        "message": redact_text(row["progress_message"]),
                    },
                )
            )
        self._last = row
        self.finished = row["status"] in FINISHED_STATUSES
        return out

    def partial_frame(self, raw: bytes | str) -> bytes | None:
        try:
            message = json.loads(raw)
        except (ValueError, TypeError):
            return None
        if not isinstance(message, dict) or message.get("event") == CHANGED:
            return None
        data: dict[str, Any] = message["data"] if isinstance(message.get("data"), dict) else {}
        # Redacted as the job's result is (status events render it through the
        # API serializer): a partial result must not show what the result hides.
        return sse_frame(
            str(message.get("event") or "partial"), {"id": str(self.job_id), **redact(data)}
        )


def stream_sync(tracker: JobEventTracker, pubsub: Any, hold: StreamHold) -> Iterator[bytes]:
    """The WSGI driver; ``pubsub`` is already subscribed to the job's channel.

    ``hold`` is freed when the generator ends, including when the server
    closes it after a failed write (the client left).
    """
    poll = jobs_settings.api_events_poll_ms / 1000
    heartbeat = _Heartbeat(hold)
    deadline = time.monotonic() + jobs_settings.api_events_max_seconds
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        while True:
            row = tracker.snapshot()
            job = tracker.full() if tracker.needs_full(row) else None
            out = _drain_sync(tracker, pubsub, 0) + tracker.frames(row, job)
            if tracker.finished:
                out += _drain_sync(tracker, pubsub, 0)
            yield from heartbeat.around(out, beat=False)
            if tracker.finished or time.monotonic() >= deadline:
                return
            # Waiting on the channel returns early when a partial result arrives.
            yield from heartbeat.around(_drain_sync(tracker, pubsub, poll))
    finally:
        hold.release()
        _close_quietly(pubsub)
        close_old_connections()


def _drain_sync(tracker: JobEventTracker, pubsub: Any, timeout: float) -> list[bytes]:
    frames: list[bytes] = []
    try:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        while message is not None:
            frame = tracker.partial_frame(message.get("data"))
            if frame is not None:
                frames.append(frame)
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
    except redis.RedisError as exc:
        logger.warning("Lost the event channel of job %s: %s", tracker.job_id, exc)
        if timeout:
            time.sleep(timeout)
    return frames


def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(redis.RedisError):
        pubsub.close()


class _Heartbeat:
    """Adds heartbeats to a stream's writes, and renews its leases, every heartbeat interval."""

    def __init__(self, hold: StreamHold) -> None:
        self.hold = hold
        self.interval = jobs_settings.api_events_heartbeat_seconds
        self.last_sent = self.last_renewed = time.monotonic()
        self.line_open = False

    def around(self, frames: list[bytes], *, beat: bool = True) -> list[bytes]:
        """``frames``, plus the heartbeat's part that is due when ``beat``.

        The stream beats once per poll, after its wait: the heartbeat's two
        writes are then a poll apart, time for a departed client's reset to arrive.
        """
        now = time.monotonic()
        if now - self.last_renewed >= self.interval:
            self.hold.renew()
            self.last_renewed = now
        out = list(frames)
        if beat and self.line_open:
            out.append(HEARTBEAT_END)
            self.line_open = False
        elif beat and not out and now - self.last_sent >= self.interval:
            out.append(HEARTBEAT)
            self.line_open = True
        if out:
            self.last_sent = now
        return out
