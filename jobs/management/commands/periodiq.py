"""``manage.py periodiq``: the periodic scheduler (one leader at a time), or ``--list``."""

from __future__ import annotations

import logging
import signal
import threading
from argparse import ArgumentParser
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError

from jobs.conf import jobs_settings
from jobs.errors import JobsError
from jobs.scheduler import (
    Scheduler,
    all_leader_tasks,
    leader_lock,
    register_leader_task,
    scheduler_leader,
    schedules_overview,
)
from jobs.services import recovery

logger = logging.getLogger("jobs.scheduler")


class Command(BaseCommand):
    help = (
        "Run the periodic scheduler: every declared schedule (cron, UTC) becomes a system job "
        "at each tick. Run several for availability; one leader (a Redis lock) submits."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--list",
            action="store_true",
            help="Print each schedule with its next and last run (UTC), and the leader; then exit.",
        )
        parser.add_argument(
            "--no-recovery",
            action="store_true",
            help="Do not run the recovery loop in the leader (run `manage.py recover` instead).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list()
            return
        if not options["no_recovery"]:
            # Requeue dead workers' messages, relay unsent rows, close lost attempts
            # (jobs.services.recovery); it takes its own lock, so a separate `recover` is harmless.
            register_leader_task(
                "recovery", jobs_settings.recovery_interval_ms / 1000, recovery.run_once
            )
        try:
            scheduler = Scheduler(lock=leader_lock())
        except JobsError as exc:
            raise CommandError(str(exc)) from exc
        stopping = threading.Event()

        def stop(signum: int, _frame: FrameType | None) -> None:
            logger.info("Received %s; stopping the scheduler.", signal.Signals(signum).name)
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info(
            "Scheduler %s started with %d schedule(s) and %d leader task(s); times are UTC.",
            scheduler.lock.identity,
            len(scheduler.schedules),
            len(scheduler.leader_tasks),
        )
        for schedule in scheduler.schedules:
            logger.info("  %-28s %-14s -> %s", schedule.name, schedule.cron, schedule.job_type)
        holder = scheduler.lock.holder()
        if holder is not None:
            logger.info("Standing by: %s holds the leader lock.", holder.identity)
        try:
            while not stopping.is_set():
                stopping.wait(scheduler.step())
        finally:
            scheduler.stop()
        logger.info("Scheduler %s stopped.", scheduler.lock.identity)

    def _list(self) -> None:
        now = datetime.now(UTC)
        rows = schedules_overview(now=now)
        write = self.stdout.write
        write(f"Schedules (times in UTC, now {now:%Y-%m-%d %H:%M:%S}):")
        header = ("NAME", "CRON", "JOB TYPE", "QUEUE", "NEXT RUN", "LAST RUN")
        table = [header]
        for row in rows:
            last = (
                f"{row.last_tick:%Y-%m-%d %H:%M} ({row.last_status})"
                if row.last_tick is not None
                else "never"
            )
            table.append(
                (
                    row.name,
                    row.cron,
                    row.job_type,
                    row.queue,
                    f"{row.next_run:%Y-%m-%d %H:%M}",
                    last,
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            write(
                "  "
                + "  ".join(
                    cell.ljust(width) for cell, width in zip(r, widths, strict=True)
                ).rstrip()
            )
        if not rows:
            write("  (no schedules declared)")
        tasks = all_leader_tasks()
        if tasks:
            write(
                "Leader tasks: "
                + ", ".join(f"{t.name} (every {t.interval_seconds:g} s)" for t in tasks)
            )
        try:
            holder = scheduler_leader()
        except redis.RedisError as exc:
            write(f"Leader: unknown (Redis is unreachable: {exc})")
            return
        if holder is None:
            write("Leader: none (no scheduler is running)")
        else:
            write(
                f"Leader: {holder.identity} (lock expires in {holder.ttl_ms / 1000:.1f} s unless renewed)"
            )
