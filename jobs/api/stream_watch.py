"""Follows the ledger rows of every job an async web process streams, in one query per poll.

A thousand streams each reading their job's row every API_EVENTS_POLL_MS
would be four thousand queries a second from one process. :class:`StreamWatch`
reads the rows of all followed jobs in one query per poll instead
(:func:`jobs.selectors.jobs.job_stream_snapshots`, on the
:mod:`jobs.api.ledger_pool`), and hands a row to a job's streams only when it
changed, or to a stream that has not seen it yet. :meth:`StreamWatch.refresh`
reads a job at once, between polls: a stream calls it when the job's channel
says its row changed (a progress report), so progress reaches clients
without waiting for the poll.

It also renews the Redis leases of the process's streams every heartbeat,
in one round trip for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError

from jobs.api.ledger_pool import LedgerPool, ledger_pool
from jobs.api.stream_slots import StreamHold
from jobs.conf import jobs_settings
from jobs.selectors.jobs import job_stream_snapshots
from jobs.transport.stream_leases import stream_leases_renew

logger = logging.getLogger(__name__)

#: (job id, organization id): a job is always read in its own organization.
JobKey = tuple[uuid.UUID, int]
#: What a stream receives: ("row", snapshot or None once gone) or ("message", raw pub/sub data).
Item = tuple[str, Any]


@dataclass(eq=False)
class Watcher:
    """One stream's place in the watch: the job it follows and the queue it reads."""

    key: JobKey
    hold: StreamHold
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)


class StreamWatch:
    """The ledger side of one process's event streams.

    Parameters:
      pool: the connections the reads borrow.
      poll_seconds: how often every followed row is read.
      heartbeat_seconds: how often the streams' leases are renewed.
    """

    def __init__(self, pool: LedgerPool, *, poll_seconds: float, heartbeat_seconds: float) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._watchers: dict[JobKey, list[Watcher]] = {}
        self._last: dict[JobKey, dict[str, Any] | None] = {}
        self._unseen: set[Watcher] = set()
        self._due: set[JobKey] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        """How many streams the watch follows."""
        return sum(len(watchers) for watchers in self._watchers.values())

    def add(self, key: JobKey, hold: StreamHold) -> Watcher:
        """Follow ``key`` for a new stream; its first row comes as soon as it is read."""
        watcher = Watcher(key=key, hold=hold)
        self._watchers.setdefault(key, []).append(watcher)
        self._unseen.add(watcher)
        self.refresh(key)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stream-watch")
        return watcher

    def remove(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.key)
        self._unseen.discard(watcher)
        if watchers is None or watcher not in watchers:
            return
        watchers.remove(watcher)
        if not watchers:
            del self._watchers[watcher.key]
            self._last.pop(watcher.key, None)

    def refresh(self, key: JobKey) -> None:
        """Read ``key``'s row now rather than at the next poll."""
        self._due.add(key)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self.poll_seconds
        next_renewal = loop.time() + self.heartbeat_seconds
        while self._watchers:
            timeout = max(0.0, min(next_poll, next_renewal) - loop.time())
            if not self._due:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            now = loop.time()
            if now >= next_renewal:
                next_renewal = now + self.heartbeat_seconds
                leases = [w.hold.lease for ws in self._watchers.values() for w in ws]
                await self.pool.run(stream_leases_renew, leases)
            if now >= next_poll:
                next_poll = now + self.poll_seconds
                keys = set(self._watchers)
            else:
                keys = self._due & set(self._watchers)
            self._due.clear()
            try:
                if keys:
                    await self._read(keys)
            except Exception:
                logger.exception("The event streams' ledger watch failed; it carries on.")

    async def _read(self, keys: set[JobKey]) -> None:
        try:
            rows = await self.pool.run(job_stream_snapshots, jobs=keys)
        except DatabaseError as exc:
            # The streams wait (with heartbeats) and the next poll tries again.
            logger.warning("Event streams could not read the ledger: %s", exc)
            return
        for key in keys:
            row = rows.get(key)
            changed = key not in self._last or self._last[key] != row
            self._last[key] = row
            for watcher in self._watchers.get(key, ()):
                if changed or watcher in self._unseen:
                    self._unseen.discard(watcher)
                    watcher.queue.put_nowait(("row", row))


_watches: dict[asyncio.AbstractEventLoop, StreamWatch] = {}


def stream_watch() -> StreamWatch:
    """This event loop's watch (one per async web process), created on first use."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        for old in [old for old in _watches if old.is_closed()]:
            del _watches[old]
        watch = _watches[loop] = StreamWatch(
            ledger_pool(),
            poll_seconds=jobs_settings.api_events_poll_ms / 1000,
            heartbeat_seconds=jobs_settings.api_events_heartbeat_seconds,
        )
    return watch
