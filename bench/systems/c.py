"""System C's client: Celery with django-celery-results (``bench/celery_app.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from bench.systems.common import BATCH, Action, batches, stamped_latency, timed


def stage(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import noop, sleep, stamp

    for start, end in batches(args.n, args.urgent_after):
        if start == args.urgent_after:
            # Kombu's Redis transport serves priority 0 first (its own list).
            stamp.apply_async(args=("urgent",), priority=0)
        with noop.app.producer_or_acquire() as producer:
            for _ in range(end - start):
                # Priority 5 lands in kombu's 3-6 list, like B's normal band.
                if args.kind == "noop":
                    noop.apply_async(producer=producer, priority=5)
                else:
                    sleep.apply_async(args=(args.sleep_ms,), producer=producer, priority=5)
    return {"staged": args.n}


def submit_bulk(args: argparse.Namespace) -> dict[str, Any]:
    from celery import group

    from bench.celery_app import noop

    def run() -> None:
        for start in range(0, args.n, BATCH):
            group(noop.s() for _ in range(min(BATCH, args.n - start))).apply_async()

    return timed(args.n, run)


def submit_single(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import noop

    noop.delay()

    def run() -> None:
        for _ in range(args.n):
            noop.delay()

    return timed(args.n, run)


def latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench.celery_app import REDIS_URL, stamp

    return stamped_latency(args, REDIS_URL, lambda tag: stamp.delay(tag))


ACTIONS: dict[str, Action] = {
    "stage": stage,
    "submit-bulk": submit_bulk,
    "submit-single": submit_single,
    "latency": latency,
}
