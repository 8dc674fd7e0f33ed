"""One Redis pub/sub connection per process, fanning job events out to the streams in memory.

An async web process serves hundreds of event streams; a pub/sub connection
each would cost Redis a client per stream and the process a socket per
stream. :class:`EventHub` holds a single ``redis.asyncio`` pub/sub
connection. A stream follows a job with :meth:`EventHub.follow`, which
subscribes to the job's channel when it is the first to follow it, and stops
with :meth:`Follow.close`, which unsubscribes after the last one. One reader
task hands each message to the sinks of its channel, in the order received.

A lost connection is logged and retried once a second; redis-py subscribes
the connection again to every channel it held when it reconnects. Messages
published meanwhile are lost, as pub/sub always loses them: the streams read
status and progress from the ledger, and partial results are best-effort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio

from jobs.transport.events import async_events_client, channel_name

logger = logging.getLogger(__name__)

#: Called with each raw message (bytes) published on a followed job's channel.
Sink = Callable[[bytes], None]

#: How long the reader waits for a message before it looks for new subscriptions, in s.
READ_TIMEOUT_SECONDS = 1.0
#: Pause after a Redis error before the reader tries again, in s.
RETRY_SECONDS = 1.0


class Follow:
    """One stream's subscription to one job's events; :meth:`close` it exactly once."""

    def __init__(self, hub: EventHub, channel: str, sink: Sink) -> None:
        self.hub = hub
        self.channel = channel
        self.sink = sink
        self.closed = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.hub._leave(self)


class EventHub:
    """Fans the messages of one pub/sub connection out to the streams of this event loop.

    Parameters:
      client_factory: builds the asyncio Redis client (the settings' REDIS_URL by default).
    """

    def __init__(
        self, client_factory: Callable[[], redis.asyncio.Redis] = async_events_client
    ) -> None:
        self._client_factory = client_factory
        self._client: redis.asyncio.Redis | None = None
        self._pubsub: Any = None
        self._sinks: dict[str, list[Follow]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def channels(self) -> int:
        """How many channels the connection is subscribed to (one per followed job)."""
        return len(self._sinks)

    @property
    def followers(self) -> int:
        """How many streams follow a job through the hub."""
        return sum(len(follows) for follows in self._sinks.values())

    async def follow(self, job_id: str, sink: Sink) -> Follow:
        """Hand every message published for ``job_id`` to ``sink`` until the follow is closed.

        Raises ``redis.RedisError`` when the job's channel cannot be subscribed to.
        """
        channel = channel_name(job_id)
        follow = Follow(self, channel, sink)
        async with self._lock:
            if self._pubsub is None:
                self._client = self._client_factory()
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            follows = self._sinks.get(channel)
            if follows is None:
                await self._pubsub.subscribe(channel)
                self._sinks[channel] = [follow]
            else:
                follows.append(follow)
            self._subscribed.set()
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(
                    self._read(), name="jobs-event-hub"
                )
        return follow

    async def _leave(self, follow: Follow) -> None:
        async with self._lock:
            follows = self._sinks.get(follow.channel)
            if follows is None or follow not in follows:
                return
            follows.remove(follow)
            if follows:
                return
            del self._sinks[follow.channel]
            if not self._sinks:
                self._subscribed.clear()
            try:
                await self._pubsub.unsubscribe(follow.channel)
            except redis.RedisError as exc:
                # The reader reconnects and subscribes again to the channels still followed.
                logger.warning("Could not unsubscribe from %s: %s", follow.channel, exc)

    async def _read(self) -> None:
        while True:
            await self._subscribed.wait()
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=READ_TIMEOUT_SECONDS
                )
            except (redis.RedisError, OSError) as exc:
                logger.warning("The event hub lost its Redis connection: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            for follow in list(self._sinks.get(channel, ())):
                try:
                    follow.sink(message["data"])
                except Exception:
                    logger.exception("An event stream's sink failed on %s.", channel)

    async def aclose(self) -> None:
        """Stop the reader and close the connection (the follows left are dropped)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._sinks.clear()
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                await self._pubsub.aclose()
        if self._client is not None:
            with contextlib.suppress(redis.RedisError):
                await self._client.aclose()  # type: ignore[attr-defined]
        self._pubsub = self._client = None


_hubs: dict[asyncio.AbstractEventLoop, EventHub] = {}


def event_hub() -> EventHub:
    """This event loop's hub (one per process under an ASGI server), created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = EventHub()
    return hub
