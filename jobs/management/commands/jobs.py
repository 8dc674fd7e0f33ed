"""``manage.py jobs``: operate the job system from a shell (status, inspect, purge, dead letters).

Thin: parses arguments, calls the selectors and services, and prints a table
or, with ``--json``, JSON. Exit codes are listed in :mod:`jobs.management.base`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import redis
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from jobs.conf import jobs_settings
from jobs.errors import InvalidTransition, JobNotFound, UnknownQueue
from jobs.management.base import (
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    age,
    asdict,
    subparser,
)
from jobs.management.dead_letters import DeadLetterSubcommands
from jobs.queues import band_queue_names
from jobs.selectors import operations as ops
from jobs.services.control import job_cancel, job_retry
from jobs.services.queues import queue_purge


class Command(DeadLetterSubcommands):
    help = (
        "Operate the job system: status, queues, inspect, stats, purge, dead-letters, "
        "retry, cancel, ping. Add --json for machine-readable output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        subparser(sub, "status", "workers alive; queues, depths, dead letters")
        subparser(sub, "queues", "every queue with its priority bands")
        p = subparser(sub, "inspect", "active jobs with their worker and runtime", org=True)
        p.add_argument("--running", action="store_true", help="only running jobs")
        p.add_argument("--limit", type=int, default=50, help="at most this many jobs (50)")
        subparser(sub, "stats", "throughput and failure rate per type (1h, 24h)", org=True)
        p = subparser(sub, "purge", "delete a queue's waiting messages; cancel their jobs")
        p.add_argument("queue")
        p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
        p = subparser(sub, "ping", "exit 0 when this host's workers heartbeat (healthcheck)")
        p.add_argument("--host", help="check this host instead of this machine")
        p.add_argument("--min-workers", type=int, default=1, help="processes required (1)")
        for name, help_text in (
            ("retry", "queue a failed or cancelled job again"),
            ("cancel", "cancel a queued, retrying or running job"),
        ):
            p = subparser(sub, name, help_text)
            p.add_argument("job_id", metavar="ID")

        dead = sub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
        dsub = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
        p = subparser(dsub, "list", "dead letters, newest first", org=True)
        p.add_argument("--type", dest="job_type", metavar="T")
        p.add_argument("--queue")
        p.add_argument("--limit", type=int, default=50, help="at most this many (50)")
        p = subparser(dsub, "show", "one dead letter in full")
        p.add_argument("job_id", metavar="ID")
        p = subparser(dsub, "replay", "queue dead letters again", org=True)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("job_id", metavar="ID", nargs="?")
        which.add_argument("--all", action="store_true", help="every dead letter (see filters)")
        which.add_argument("--type", dest="job_type", metavar="T", help="every dead letter of T")
        p.add_argument("--queue", help="only dead letters of this queue")
        p = subparser(dsub, "purge", "drop dead letters (their failed rows stay)", org=True)
        p.add_argument("--type", dest="job_type", metavar="T")
        p.add_argument("--queue")
        p.add_argument("--yes", action="store_true", help="confirm")

    # --- dispatch --------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json: bool = bool(options.get("json"))
        name = options["subcommand"]
        if name == "dead-letters":
            name = f"dead_letters_{options['action']}"
        handler: Callable[[dict[str, Any]], None] = getattr(self, f"cmd_{name}")
        try:
            handler(options)
        except redis.RedisError as exc:
            raise CommandError(
                f"Redis at {jobs_settings.redis_url} is unreachable ({exc}). Start Redis, or point "
                "REDIS_URL at the broker the workers use.",
                returncode=EXIT_UNAVAILABLE,
            ) from None
        except DatabaseError as exc:
            raise CommandError(
                f"The database is unreachable or not migrated ({exc}). Check DATABASE_URL, and run "
                "`python manage.py migrate`.",
                returncode=EXIT_UNAVAILABLE,
            ) from None
        except JobNotFound as exc:
            raise CommandError(str(exc), returncode=EXIT_NOT_FOUND) from None
        except InvalidTransition as exc:
            raise CommandError(str(exc), returncode=EXIT_CONFLICT) from None
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None

    # --- subcommands -----------------------------------------------------------------------

    def cmd_status(self, options: dict[str, Any]) -> None:
        status = ops.system_status()
        if self.as_json:
            self._json(
                {
                    "workers": [asdict(w) for w in status.workers],
                    "queues": [
                        {**asdict(q.stats), "dead_letters": q.dead_letters} for q in status.queues
                    ],
                }
            )
            return
        threads = sum(w.threads for w in status.workers)
        hosts = sorted({w.host for w in status.workers})
        self.stdout.write(
            f"Workers: {len(status.workers)} process(es), {threads} thread(s)"
            + (f" on {', '.join(hosts)}" if hosts else " — none alive")
        )
        for w in status.workers:
            self.stdout.write(
                f"  {w.host} pid {w.pid}: {w.threads} threads, "
                f"seen {age(w.seconds_since_seen)} ago, up {age(time.time() - w.started_at)}"
            )
        self.stdout.write("")
        self._table(
            ["QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD LETTERS", "OLDEST WAITING"],
            [
                [
                    q.stats.queue,
                    q.stats.ready,
                    q.stats.in_flight,
                    q.stats.delayed,
                    q.dead_letters,
                    age(q.stats.oldest_ready_age_seconds),
                ]
                for q in status.queues
            ],
        )

    def cmd_queues(self, options: dict[str, Any]) -> None:
        status = ops.system_status()
        if self.as_json:
            self._json([asdict(q.stats) for q in status.queues])
            return
        rows = []
        for q in status.queues:
            s = q.stats
            urgent, normal, bulk = (s.bands.get(b, 0) for b in band_queue_names(s.queue))
            rows.append(
                [
                    s.queue,
                    urgent,
                    normal,
                    bulk,
                    s.ready,
                    s.in_flight,
                    s.delayed,
                    s.dead,
                    age(s.oldest_ready_age_seconds),
                ]
            )
        self._table(
            [
                "QUEUE",
                "URGENT",
                "NORMAL",
                "BULK",
                "READY",
                "IN FLIGHT",
                "DELAYED",
                "DEAD (REDIS)",
                "OLDEST",
            ],
            rows,
        )

    def cmd_inspect(self, options: dict[str, Any]) -> None:
        rows = ops.active_jobs(
            organization=self._organization(options),
            running_only=options["running"],
            limit=options["limit"],
        )
        if self.as_json:
            self._json([asdict(r) for r in rows])
            return
        if not rows:
            self.stdout.write("No running jobs." if options["running"] else "No active jobs.")
            return
        self._table(
            ["JOB", "TYPE", "ORG", "STATUS", "ATTEMPT", "PROGRESS", "WORKER", "RUNTIME"],
            [
                [
                    r.id,
                    r.job_type,
                    r.organization or "-",
                    r.status,
                    r.attempt,
                    f"{r.progress}%",
                    (r.worker_id or "-") + (" (dead)" if r.worker_alive is False else ""),
                    age(r.runtime_seconds),
                ]
                for r in rows
            ],
        )

    def cmd_stats(self, options: dict[str, Any]) -> None:
        rows = ops.job_type_stats(organization=self._organization(options))
        if self.as_json:
            self._json([asdict(r) for r in rows])
            return
        if not rows:
            self.stdout.write("No jobs in the last 24 hours.")
            return
        self._table(
            [
                "WINDOW",
                "TYPE",
                "SUBMITTED",
                "FINISHED",
                "SUCCEEDED",
                "FAILED",
                "CANCELLED",
                "RETRIES",
                "FAILURE RATE",
                "PER MIN",
                "AVG DURATION",
            ],
            [
                [
                    r.window,
                    r.job_type,
                    r.submitted,
                    r.finished,
                    r.succeeded,
                    r.failed,
                    r.cancelled,
                    r.retried_attempts,
                    "-" if r.failure_rate is None else f"{r.failure_rate:.1%}",
                    f"{r.throughput_per_minute:g}",
                    age(r.avg_duration_seconds),
                ]
                for r in rows
            ],
        )

    def cmd_purge(self, options: dict[str, Any]) -> None:
        queue = options["queue"]
        if not options["yes"]:
            stats = {s.stats.queue: s.stats for s in ops.system_status().queues}
            if queue not in stats:
                raise UnknownQueue(f"Unknown queue {queue!r}. Choose from: {', '.join(stats)}.")
            s = stats[queue]
            raise CommandError(
                f"This deletes {s.ready} waiting and {s.delayed} delayed message(s) of queue "
                f"{queue!r} and cancels their jobs. Run `python manage.py jobs purge {queue} --yes` "
                "to confirm.",
                returncode=EXIT_USAGE,
            )
        result = queue_purge(queue=queue, via="cli", progress=self._progress("cancelling"))
        if self.as_json:
            self._json(asdict(result))
            return
        self.stdout.write(
            f"Purged queue {queue}: {result.removed_messages} message(s) removed, "
            f"{result.cancelled_jobs} job(s) cancelled (JobEvent 'purged')."
        )
        if result.without_row:
            self.stdout.write(
                f"{result.without_row} message(s) had no ledger row or an already finished job."
            )
        if result.in_flight:
            self.stdout.write(
                f"{result.in_flight} message(s) were already fetched by workers and were left to "
                "run; cancel them with `python manage.py jobs cancel ID` (see `jobs inspect`)."
            )

    def cmd_ping(self, options: dict[str, Any]) -> None:
        host = options["host"] or socket.gethostname()
        found = ops.workers_on_host(host=host)
        healthy = len(found) >= options["min_workers"]
        if self.as_json:
            self._json({"host": host, "healthy": healthy, "workers": [asdict(w) for w in found]})
        timeout_s = jobs_settings.heartbeat_timeout_ms / 1000
        if not healthy:
            raise CommandError(
                f"Unhealthy: {len(found)} worker process(es) on host {host!r} sent a heartbeat in "
                f"the last {timeout_s:g} s; {options['min_workers']} required. Is `python manage.py "
                f"rundramatiq` running on this host against REDIS_URL={jobs_settings.redis_url} "
                f"(namespace {jobs_settings.redis_namespace!r})?",
                returncode=EXIT_UNHEALTHY,
            )
        if not self.as_json:
            newest = min(w.seconds_since_seen for w in found)
            self.stdout.write(
                f"OK: {len(found)} worker process(es) on {host} heartbeating "
                f"(latest {age(newest)} ago)."
            )

    def cmd_retry(self, options: dict[str, Any]) -> None:
        job = job_retry(job=self._job(options["job_id"]), enforce_limits=False, via="cli")
        self._job_done(job, f"Job {job.pk} queued again ({job.job_type}).")

    def cmd_cancel(self, options: dict[str, Any]) -> None:
        job = job_cancel(job=self._job(options["job_id"]), via="cli")
        verb = "cancelled" if job.status == "cancelled" else "asked to stop (it is running)"
        self._job_done(job, f"Job {job.pk} {verb}.")
