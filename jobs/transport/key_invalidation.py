"""Every web process forgets the API keys it trusts as soon as one is revoked (Redis pub/sub).

The tenants app sends ``api_keys_changed`` once a change has committed (a key
revoked, an organization deactivated or its limits changed, a membership
changed). :func:`publish` turns it into a message on one pub/sub channel.
Each process that authenticates API keys listens to that channel in one
daemon thread: it forgets its keys, then acknowledges on a list the sender
waits on, so when a revocation returns, no process trusts the key any more
(unless one failed to answer within ``ACK_TIMEOUT_SECONDS``, which is logged;
it then trusts the key for at most API_KEY_CACHE_SECONDS).

While its listener is not subscribed (starting, reconnecting, Redis down, or
silent past ``SILENT_AFTER_SECONDS``), a process does not trust its cache:
each request reads its key from the database. Telling whether it listens is a
look at the thread's state, never a Redis round trip.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

import redis

from jobs.transport.broker import get_broker
from tenants import key_cache
from tenants.signals import api_keys_changed

logger = logging.getLogger(__name__)

#: How long a revocation waits for every listening process to confirm it forgot its keys.
ACK_TIMEOUT_SECONDS = 2.0
#: How long the first request of a process waits for its listener to subscribe.
START_WAIT_SECONDS = 1.0
#: The listener pings Redis this often, and counts as deaf after three silent intervals.
PING_SECONDS = 5.0
SILENT_AFTER_SECONDS = 3 * PING_SECONDS
#: Pause between reconnection attempts of the listener.
RECONNECT_SECONDS = 1.0
#: How long an unread acknowledgement list lives in Redis.
ACK_TTL_SECONDS = 60


def channel_name(client: redis.Redis) -> str:
    """The channel of one deployment: pub/sub ignores database numbers, so the name carries it."""
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{get_broker().namespace}:tenants:api-keys:{db}"


def _ack_key(channel: str, nonce: str) -> str:
    return f"{channel}:ack:{nonce}"


class _Listener(threading.Thread):
    """Forgets this process's keys on every message of the channel, and acknowledges it."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(name="api-key-invalidation", daemon=True)
        self.client = client
        self.channel = channel_name(client)
        self.pid = os.getpid()
        self.subscribed = False
        self.ready = threading.Event()
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError) as exc:
                logger.warning(
                    "API key invalidations unheard (%s: %s); this process reads every key "
                    "from the database until it listens again.",
                    type(exc).__name__,
                    exc,
                )
            finally:
                self.subscribed = False
            self._stop_requested.wait(RECONNECT_SECONDS)

    def _listen(self) -> None:
        pubsub: Any = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            last_heard = last_ping = time.monotonic()
            while not self._stop_requested.is_set():
                message = pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    last_heard = now
                    if message["type"] == "subscribe":
                        # Changes made while it was deaf are unknown: start over.
                        key_cache.forget()
                        self.subscribed = True
                        self.ready.set()
                    elif message["type"] == "message":
                        key_cache.forget()
                        self._acknowledge(message["data"])
                if now - last_ping >= PING_SECONDS:
                    pubsub.ping()
                    last_ping = now
                if now - last_heard > SILENT_AFTER_SECONDS:
                    raise redis.ConnectionError("no answer to PING from Redis")
        finally:
            self.subscribed = False
            pubsub.close()

    def _acknowledge(self, nonce: bytes | str) -> None:
        text = nonce.decode() if isinstance(nonce, bytes) else str(nonce)
        key = _ack_key(self.channel, text)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, self.pid)
            pipe.expire(key, ACK_TTL_SECONDS)
            pipe.execute()


_listener: _Listener | None = None
_listener_lock = threading.Lock()


def listening() -> bool:
    """Whether this process hears invalidations now (the key cache's trust check).

    Starts the listener on first use in a process (and again after a fork, or
    when the broker's client was replaced), waiting up to START_WAIT_SECONDS
    for it to subscribe.
    """
    listener = _listener
    client = get_broker().client
    if (
        listener is None
        or listener.pid != os.getpid()
        or listener.client is not client
        or not listener.is_alive()
    ):
        listener = _start(client)
    return listener.subscribed


def _start(client: redis.Redis) -> _Listener:
    global _listener
    with _listener_lock:
        current = _listener
        if (
            current is not None
            and current.pid == os.getpid()
            and current.client is client
            and current.is_alive()
        ):
            return current
        if current is not None and current.pid == os.getpid():
            current.stop()
        listener = _Listener(client)
        listener.start()
        _listener = listener
    listener.ready.wait(START_WAIT_SECONDS)
    return listener


def publish(**kwargs: Any) -> None:
    """Tell every listening process to forget its keys, and wait until they all have."""
    client = get_broker().client
    channel = channel_name(client)
    nonce = uuid.uuid4().hex
    receivers = acknowledged = 0
    try:
        receivers = int(client.publish(channel, nonce))
        deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
        while acknowledged < receivers:
            remaining = deadline - time.monotonic()
            if (
                remaining <= 0
                or client.blpop([_ack_key(channel, nonce)], timeout=remaining) is None
            ):
                break
            acknowledged += 1
        client.delete(_ack_key(channel, nonce))
    except redis.RedisError as exc:
        logger.warning(
            "Could not tell the web processes to forget their API keys (%s: %s); they trust "
            "them for at most API_KEY_CACHE_SECONDS.",
            type(exc).__name__,
            exc,
        )
        return
    if acknowledged < receivers:
        logger.warning(
            "%d of %d web process(es) did not confirm within %g s that they forgot their API "
            "keys; they trust them for at most API_KEY_CACHE_SECONDS.",
            receivers - acknowledged,
            receivers,
            ACK_TIMEOUT_SECONDS,
        )


def connect() -> None:
    """Relay the tenants app's invalidations through Redis (from ``JobsConfig.ready``)."""
    api_keys_changed.connect(publish, dispatch_uid="jobs.key_invalidation.publish")
    key_cache.set_trust_check(listening)
