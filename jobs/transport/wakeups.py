"""Wake idle consumers when a message reaches their queue, instead of letting them poll.

Dramatiq's Redis consumer fetches, and when its queue is empty sleeps a back-off
(5 ms doubling up to the worker timeout) before fetching again. A worker
process consumes 48 lists (8 queues x 3 bands, plus their delay queues), so an
idle worker spends CPU on hundreds of fetches a second, and a job still waits
for its band's next poll.

Instead, whoever puts a message on a list (enqueue, the delay-queue move,
requeues, the recovery loop) also publishes the list's name on one pub/sub
channel, in the same round trip. Each worker process runs one listener thread
(:class:`QueueWakeups`) on one pub/sub connection; a notification sets the
queue's :class:`threading.Event`, on which its idle consumer waits.

Pub/sub is at-most-once, so a notification is only a hint:

- an idle consumer still polls every ``poll_ms`` while the listener is
  subscribed, so a lost notification costs at most that long;
- while the listener is not subscribed (Redis down, connection killed), the
  consumers poll with Dramatiq's back-off as before;
- every (re)subscription wakes every consumer once, to fetch what was
  enqueued while nobody listened.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis

logger = logging.getLogger(__name__)

#: How long one read of the pub/sub connection blocks, in seconds (bounds how fast ``stop`` ends).
LISTEN_READ_TIMEOUT_SECONDS = 0.5
#: Waits between attempts to resubscribe after the connection failed, in seconds.
RESUBSCRIBE_BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def wakeup_channel(namespace: str, client: redis.Redis) -> str:
    """The pub/sub channel on which enqueuers name the queues they filled.

    Pub/sub ignores database numbers, so the channel carries the client's
    database: deployments sharing one Redis on different databases do not
    wake each other's consumers.
    """
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{namespace}:__wakeups__:{db}"


class QueueWakeups:
    """The wake-up events of one process's consumers, fed by one pub/sub listener thread.

    Parameters:
      client: the broker's Redis client (URL, TLS or Sentinel, as configured).
      channel: the pub/sub channel that enqueuers publish queue names on.
      poll_ms: how long an idle consumer waits for a notification before it
        fetches anyway while the listener is subscribed, in milliseconds.
    """

    def __init__(self, client: redis.Redis, channel: str, *, poll_ms: int) -> None:
        self.client = client
        self.channel = channel
        self.poll_ms = poll_ms
        #: Notifications received and (re)subscriptions made: for tests and debugging.
        self.notifications = 0
        self.subscriptions = 0
        self._events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: redis.client.PubSub | None = None

    @property
    def listening(self) -> bool:
        """Whether notifications arrive now; if not, consumers poll with the back-off."""
        return self._subscribed.is_set()

    def event(self, queue_name: str) -> threading.Event:
        """The event set when a message may have reached ``queue_name``."""
        with self._events_lock:
            event = self._events.get(queue_name)
            if event is None:
                event = self._events[queue_name] = threading.Event()
            return event

    def wake(self, queue_name: str) -> None:
        """Wake the consumer of ``queue_name`` in this process, if any."""
        event = self._events.get(queue_name)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        with self._events_lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    def wait_until_listening(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Start the listener thread (once per worker; a second call does nothing)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="queue-wakeups", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening; consumers go back to polling, so they notice their own stop quickly."""
        self._stop.set()
        self._set_subscribed(False)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _set_subscribed(self, subscribed: bool) -> None:
        # Subscribed: first wake every consumer to fetch what arrived while
        # nobody listened. Not subscribed: first stop waiting for notifications
        # that will not come, then wake the waiting consumers to poll instead.
        if subscribed:
            self.wake_all()
            self.subscriptions += 1
            self._subscribed.set()
        else:
            self._subscribed.clear()
            self.wake_all()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self._pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_READ_TIMEOUT_SECONDS)
                    if message is not None:
                        self._handle(message)
                        failures = 0
            except redis.RedisError as exc:
                if failures == 0:
                    logger.warning(
                        "Queue wake-ups lost their Redis connection (%s: %s); consumers poll "
                        "until the listener resubscribes.",
                        type(exc).__name__,
                        exc,
                    )
                failures += 1
            except Exception:
                # Never let the thread die: consumers would wait out poll_ms forever.
                logger.exception("Queue wake-up listener failed; resubscribing.")
                failures += 1
            finally:
                self._set_subscribed(False)
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
            backoff = RESUBSCRIBE_BACKOFF_SECONDS[
                min(max(failures - 1, 0), len(RESUBSCRIBE_BACKOFF_SECONDS) - 1)
            ]
            self._stop.wait(backoff)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            self.notifications += 1
            data = message["data"]
            self.wake(data.decode() if isinstance(data, bytes) else str(data))
        elif kind == "subscribe":
            # Also sent when redis-py reconnects and resubscribes on its own
            # after a dropped connection: notifications may have been missed.
            self._set_subscribed(True)


def publish_wakeups(pipe: Any, channel: str, queue_names: Iterable[str]) -> int:
    """Queue one PUBLISH per distinct queue name on ``pipe``; returns how many were queued."""
    names = dict.fromkeys(queue_names)
    for name in names:
        pipe.publish(channel, name)
    return len(names)
