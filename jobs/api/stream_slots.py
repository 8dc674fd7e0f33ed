"""The slots an event stream holds while it is open, taken before it starts.

Every stream takes one slot of its API key (or staff user) and one of its
organization, shared by every web process (``jobs.transport.stream_leases``), and on
a threaded (WSGI) server one of this process's stream threads: each open
stream holds a thread there, and the cap leaves the others to /healthz and the
other tenants' requests. The ASGI driver streams without a thread, so that cap
does not apply to it. Over any cap: :class:`TooManyStreams` (429).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from rest_framework import exceptions, status

from jobs.conf import jobs_settings
from jobs.transport.stream_leases import (
    LEASE_HEARTBEATS,
    StreamCap,
    StreamLease,
    event_stream_acquire,
)


class TooManyStreams(exceptions.APIException):
    """Raised when opening an event stream would pass a cap on open streams (429 with Retry-After)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many open event streams; close one, or retry later."
    default_code = "too_many_streams"

    def __init__(self, detail: str, *, wait: int) -> None:
        super().__init__(detail)
        self.wait = wait


class _ProcessStreams:
    """The streams this process serves on its threads, against API_EVENTS_MAX_STREAMS_PER_PROCESS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def take(self, limit: int) -> bool:
        with self._lock:
            if self.open >= limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


_process_streams = _ProcessStreams()


class StreamHold:
    """What one open stream holds: its leases in Redis and, when threaded, one stream thread here.

    :meth:`release` may be called many times (the generator's ``finally``, the
    response's ``close``); only the first frees anything.
    """

    def __init__(self, lease: StreamLease, *, threaded: bool) -> None:
        self.lease = lease
        self.threaded = threaded
        self._released = False

    def renew(self) -> None:
        self.lease.renew()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.threaded:
            _process_streams.give_back()
        self.lease.release()


def stream_hold(*, holder: str, organization_id: int, threaded: bool) -> StreamHold:
    """Take the slots of a new stream, before anything is streamed.

    ``holder`` is who opens it (``key:<id>`` or ``user:<id>``); ``threaded``:
    the stream will hold one of this process's threads (WSGI), so the
    per-process cap applies too.

    Raises:
      TooManyStreams: a cap is reached; ``Retry-After`` is one heartbeat, the
        time a closed stream takes to free its slot.
    """
    wait = jobs_settings.api_events_heartbeat_seconds
    if threaded and not _process_streams.take(jobs_settings.api_events_max_streams_per_process):
        raise TooManyStreams(
            "This web process serves as many event streams as it may "
            "(API_EVENTS_MAX_STREAMS_PER_PROCESS); retry shortly.",
            wait=wait,
        )
    try:
        taken = event_stream_acquire(
            holder=holder,
            organization_id=organization_id,
            per_holder=jobs_settings.api_events_max_streams_per_key,
            per_organization=jobs_settings.api_events_max_streams_per_organization,
            lease_ms=LEASE_HEARTBEATS * wait * 1000,
        )
    except BaseException:
        if threaded:
            _process_streams.give_back()
        raise
    if isinstance(taken, StreamCap):
        if threaded:
            _process_streams.give_back()
        if taken is StreamCap.HOLDER:
            message = (
                f"This API key has {jobs_settings.api_events_max_streams_per_key} event streams "
                "open, its most (API_EVENTS_MAX_STREAMS_PER_KEY); close one first."
            )
        else:
            message = (
                "This organization has "
                f"{jobs_settings.api_events_max_streams_per_organization} event streams open, "
                "its most (API_EVENTS_MAX_STREAMS_PER_ORGANIZATION); close one first."
            )
        raise TooManyStreams(message, wait=wait)
    return StreamHold(taken, threaded=threaded)


class ClosingStream:
    """A WSGI stream whose ``close`` frees its hold even if it never started.

    The server closes the response's iterator when it is done with it; closing
    a generator that never ran skips its ``finally``.
    """

    def __init__(self, frames: Iterator[bytes], hold: StreamHold) -> None:
        self._frames = frames
        self._hold = hold

    def __iter__(self) -> ClosingStream:
        return self

    def __next__(self) -> bytes:
        return next(self._frames)

    def close(self) -> None:
        try:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
        finally:
            self._hold.release()
