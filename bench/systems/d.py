"""System D's client: Huey with its priority Redis storage (``bench/huey_app.py``)."""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Sequence
from typing import Any

from bench.systems.common import BATCH, Action, batches, stamped_latency, timed


def _pipelined(tasks: Sequence[Any]) -> None:
    """What ``Huey.enqueue`` does per task, for a batch of tasks in one pipeline.

    Huey has no bulk enqueue: ``Task.map()`` and ``enqueue(group)`` send one ZADD per
    task and wait for each. This is Huey's own serialization, priority score and
    sorted-set member (``RedisPriorityQueue.enqueue``), pipelined as A's bulk is.
    """
    from huey.signals import SIGNAL_ENQUEUED

    from bench.huey_app import huey

    storage = huey.storage
    with storage.conn.pipeline(transaction=False) as pipe:
        for task in tasks:
            huey._emit(SIGNAL_ENQUEUED, task)
            data = huey.serialize_task(task)
            prefix = struct.pack(">Q", int(time.time() * 1e6))
            score = 0 if task.priority is None else -task.priority
            pipe.zadd(storage.queue_key, {prefix + data: score})
        pipe.execute()


def _workload(kind: str, n: int, sleep_ms: int) -> list[Any]:
    from bench.huey_app import noop, sleep

    if kind == "noop":
        return [noop.s() for _ in range(n)]
    return [sleep.s(sleep_ms) for _ in range(n)]


def stage(args: argparse.Namespace) -> dict[str, Any]:
    from bench.huey_app import stamp

    tasks = _workload(args.kind, args.n, args.sleep_ms)
    for start, end in batches(len(tasks), args.urgent_after):
        if start == args.urgent_after:
            # Huey's priority: higher runs first (the sorted set's score is -priority).
            _pipelined([stamp.s("urgent", priority=9)])
        _pipelined(tasks[start:end])
    return {"staged": len(tasks)}


def submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    tasks = _workload("noop", args.n, 0)

    def run() -> None:
        for start in range(0, len(tasks), BATCH):
            _pipelined(tasks[start : start + BATCH])

    return timed(args.n, run)


def submit_single(args: argparse.Namespace) -> dict[str, Any]:
    from bench.huey_app import noop

    noop()

    def run() -> None:
        for _ in range(args.n):
            noop()

    return timed(args.n, run)


def latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.huey_app import REDIS_URL, stamp

    return stamped_latency(args, REDIS_URL, lambda tag: stamp(tag))


ACTIONS: dict[str, Action] = {
    "stage": stage,
    "submit-bulk": submit_bulk,
    "submit-single": submit_single,
    "latency": latency,
}
