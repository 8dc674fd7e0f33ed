"""System A: raw Dramatiq, a RedisBroker with its default middleware and no ledger.

Run by the ``dramatiq`` CLI (``dramatiq bench.raw_dramatiq -p 2 -t 8``) and
imported by the bench client to send messages.
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
NAMESPACE = os.environ.get("BENCH_DRAMATIQ_NAMESPACE", "dramatiq")
STAMPS_KEY = "bench:stamps"

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)

_stamps = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(queue_name="default", max_retries=0)
def noop() -> None:
    """Does nothing: measures the system's own cost per message."""


@dramatiq.actor(queue_name="default", max_retries=0)
def sleep(ms: int) -> None:
    """Sleeps ``ms`` milliseconds: an I/O-bound job."""
    time.sleep(ms / 1000)


@dramatiq.actor(queue_name="default", max_retries=0)
def stamp(tag: str) -> None:
    """Records when it started (wall clock), for enqueue→start latency."""
    started = time.time()
    _stamps.rpush(STAMPS_KEY, f"{tag} {started!r}")
