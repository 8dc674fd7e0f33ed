"""System A's client: raw Dramatiq (``bench/raw_dramatiq.py``)."""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench.systems.common import BATCH, Action, batches, stamped_latency, timed


def _pipelined(messages: Sequence[Any]) -> None:
    """RedisBroker.enqueue's Lua script, pipelined: the fastest enqueue raw Dramatiq has."""
    from bench.raw_dramatiq import broker

    dispatch = broker.scripts["dispatch"]
    max_unpack = broker._max_unpack_size()
    with broker.client.pipeline(transaction=False) as pipe:
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            broker.emit_before("enqueue", message, None)
            dispatch(
                keys=[broker.namespace],
                args=[
                    "enqueue",
                    int(time.time() * 1000),
                    message.queue_name,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,
                    max_unpack,
                    message.options["redis_message_id"],
                    message.encode(),
                ],
                client=pipe,
            )
        pipe.execute()


def _workload(kind: str, n: int, sleep_ms: int) -> list[Any]:
    from bench.raw_dramatiq import noop, sleep

    if kind == "noop":
        return [noop.message() for _ in range(n)]
    return [sleep.message(sleep_ms) for _ in range(n)]


def stage(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import stamp

    messages = _workload(args.kind, args.n, args.sleep_ms)
    for start, end in batches(len(messages), args.urgent_after):
        if start == args.urgent_after:
            # Raw Dramatiq's priority only reorders prefetched messages: the urgent job
            # goes to the same Redis list, behind the backlog.
            _pipelined([stamp.message_with_options(args=("urgent",), priority=0)])
        _pipelined(messages[start:end])
    return {"staged": len(messages)}


def submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    messages = _workload("noop", args.n, 0)

    def run() -> None:
        for start in range(0, len(messages), BATCH):
            _pipelined(messages[start : start + BATCH])

    return timed(args.n, run)


def submit_single(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import noop

    noop.send()  # warm up the connection, as every system's loop does

    def run() -> None:
        for _ in range(args.n):
            noop.send()

    return timed(args.n, run)


def latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.raw_dramatiq import REDIS_URL, stamp

    return stamped_latency(args, REDIS_URL, lambda tag: stamp.send(tag))


ACTIONS: dict[str, Action] = {
    "stage": stage,
    "submit-bulk": submit_bulk,
    "submit-single": submit_single,
    "latency": latency,
}
