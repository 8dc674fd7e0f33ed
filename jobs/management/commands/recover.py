"""``manage.py recover``: run the recovery loop (``jobs.services.recovery.run_once``) on an interval."""

from __future__ import annotations

import logging
import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections
from redis import RedisError

from jobs.conf import jobs_settings
from jobs.services.recovery import run_once

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Requeue the messages of dead workers, re-send ledger rows that never reached Redis, "
        "and mark lost attempts, every JOBS_RECOVERY_INTERVAL_MS. Safe to run in several places."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument(
            "--interval-ms",
            type=int,
            default=None,
            help="Milliseconds between passes (default: JOBS_RECOVERY_INTERVAL_MS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval_ms = options["interval_ms"] or jobs_settings.recovery_interval_ms
        if interval_ms < 1:
            raise CommandError("--interval-ms must be at least 1.")
        if options["once"]:
            try:
                report = run_once()
            except (RedisError, DatabaseError) as exc:
                raise CommandError(f"The recovery pass failed: {exc}") from exc
            self.stdout.write(
                "Skipped: another process is running a pass."
                if report.skipped
                else f"Recovery pass finished: {report.summary()}."
            )
            return

        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.stdout.write(f"Recovery loop started (every {interval_ms} ms).")
        self.stdout.flush()
        while not stop.is_set():
            close_old_connections()
            try:
                run_once()
            except (RedisError, DatabaseError) as exc:
                logger.warning("Recovery pass failed (%s: %s); retrying.", type(exc).__name__, exc)
            stop.wait(interval_ms / 1000)
        self.stdout.write("Recovery loop stopped.")
