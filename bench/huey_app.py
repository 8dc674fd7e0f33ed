"""System D: Huey with its priority Redis storage, run by process workers.

Run by ``huey_consumer bench.huey_app.huey -k process -w 16`` and imported by the
bench client to enqueue tasks. ``PriorityRedisHuey`` keeps the queue in a sorted set
(``BZPOPMIN``), so the urgent job of the backlog row can jump the queue as B's and
C's can; every row uses the same storage.

Messages are JSON, as A's, B's and C's are (Huey's default is pickle, which this
project never uses). Huey has no acknowledgement, so to know when the last job of a
run finished, each worker process counts finished jobs in memory and a thread of its
own reports them in batches (``bench.huey_keys``): nothing is added to a job's path
but a counter increment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import redis
from huey import PriorityRedisHuey
from huey.registry import Message
from huey.serializer import Serializer

from bench.huey_keys import DONE_KEY, LAST_PREFIX, LIVE_NAME

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
NAME = os.environ.get("BENCH_HUEY_NAME", LIVE_NAME)
STAMPS_KEY = "bench:stamps"
logger = logging.getLogger("huey.bench")


class JSONSerializer(Serializer):
    """Huey's messages (and results) as JSON instead of pickle."""

    def _serialize(self, data: Any) -> bytes:
        if isinstance(data, Message):
            return json.dumps({"m": list(data)}).encode()
        return json.dumps({"v": data}).encode()

    def _deserialize(self, data: bytes) -> Any:
        decoded = json.loads(data)
        if "m" in decoded:
            return Message(*decoded["m"])
        return decoded["v"]


huey = PriorityRedisHuey(NAME, url=REDIS_URL, serializer=JSONSerializer())
_stamps = redis.Redis.from_url(REDIS_URL)


@huey.task()
def noop() -> None:
    """Does nothing: measures the system's own cost per task."""


@huey.task()
def sleep(ms: int) -> None:
    """Sleeps ``ms`` milliseconds: an I/O-bound task."""
    time.sleep(ms / 1000)


@huey.task()
def stamp(tag: str) -> None:
    """Records when it started (wall clock), for enqueue→start latency."""
    started = time.time()
    _stamps.rpush(STAMPS_KEY, f"{tag} {started!r}")


class _Finished:
    """This worker process's count of finished jobs, reported by a thread of its own."""

    def __init__(self) -> None:
        self.count = 0
        self.reported = 0
        self.last = 0.0
        self.changed = threading.Event()

    def record(self) -> None:
        self.count += 1
        self.last = time.time()
        self.changed.set()

    def report_forever(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        key = f"{LAST_PREFIX}{os.getpid()}"
        while True:
            self.changed.wait()
            time.sleep(0.02)  # a batch: this thread stays off the jobs' path
            self.changed.clear()
            count, last = self.count, self.last
            try:
                with client.pipeline(transaction=False) as pipe:
                    pipe.incrby(DONE_KEY, count - self.reported)
                    pipe.set(key, repr(last))
                    pipe.execute()
            except redis.RedisError:
                logger.exception("bench: could not report finished jobs")
                self.changed.set()
                time.sleep(0.5)
                continue
            self.reported = count


_finished = _Finished()


@huey.post_execute()
def _count_finished(task: Any, task_value: Any, exc: BaseException | None) -> None:
    _finished.record()


@huey.on_startup()
def _report_finished() -> None:
    threading.Thread(target=_finished.report_forever, name="bench-report", daemon=True).start()
    logger.info("bench: huey worker ready")
