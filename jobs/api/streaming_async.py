"""The ASGI driver of a job's event stream: no thread, no connection of its own while it waits.

A stream is a coroutine reading one queue, fed by two shared parts of the
process: the :class:`~jobs.api.stream_watch.StreamWatch` (the job's ledger
row, when it changes) and the :class:`~jobs.transport.event_hub.EventHub`
(what the job publishes: partial results, and the notice that its row
changed, which makes the watch read it at once). The frames are the same
:class:`~jobs.api.streaming.JobEventTracker` makes for the threaded driver.

The server cancels the coroutine when the client disconnects; its
``finally`` frees the stream's slots then, not a heartbeat later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import redis

from jobs.api.stream_slots import StreamHold
from jobs.api.stream_watch import Item, StreamWatch, stream_watch
from jobs.api.streaming import RECONNECT_MS, JobEventTracker
from jobs.conf import jobs_settings
from jobs.transport.event_hub import Follow, event_hub
from jobs.transport.events import CHANGED

logger = logging.getLogger(__name__)

#: An idle stream's comment line, sent every heartbeat interval (proxies keep the
#: connection open; the ASGI server hears of a departed client without it).
HEARTBEAT = b": heartbeat\n\n"


async def stream_watched(tracker: JobEventTracker, hold: StreamHold) -> AsyncIterator[bytes]:
    """The stream's bytes until the job finishes, is gone, or API_EVENTS_MAX_SECONDS pass."""
    watch = stream_watch()
    key = (tracker.job_id, tracker.organization_id)
    watcher = watch.add(key, hold)
    queue = watcher.queue
    follow: Follow | None = None
    heartbeat = jobs_settings.api_events_heartbeat_seconds
    deadline = time.monotonic() + jobs_settings.api_events_max_seconds
    try:
        try:
            follow = await event_hub().follow(
                str(tracker.job_id), lambda raw: queue.put_nowait(("message", raw))
            )
        except redis.RedisError as exc:
            logger.warning("Cannot follow partial results of job %s: %s", tracker.job_id, exc)
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                first = await asyncio.wait_for(queue.get(), min(heartbeat, left))
            except TimeoutError:
                yield HEARTBEAT
                continue
            items = [first]
            while not queue.empty():
                items.append(queue.get_nowait())
            frames = await _frames(tracker, items, watch)
            if frames:
                yield b"".join(frames)
            if tracker.finished:
                return
    finally:
        watch.remove(watcher)
        hold.release()
        if follow is not None:
            await follow.close()


async def _frames(tracker: JobEventTracker, items: list[Item], watch: StreamWatch) -> list[bytes]:
    frames: list[bytes] = []
    for kind, value in items:
        if kind == "row":
            job = None
            if tracker.needs_full(value):
                job = await watch.pool.run(tracker.full)
                if job is None:  # deleted between the two reads
                    value = None
            frames += tracker.frames(value, job)
            if tracker.finished:
                break
        elif _is_changed_notice(value):
            watch.refresh((tracker.job_id, tracker.organization_id))
        else:
            frame = tracker.partial_frame(value)
            if frame is not None:
                frames.append(frame)
    return frames


def _is_changed_notice(raw: bytes | str) -> bool:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return False
    return isinstance(message, dict) and message.get("event") == CHANGED
