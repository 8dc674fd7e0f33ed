"""``manage.py jobs``: operate the job system from a shell (status, inspect, purge, dead letters).

Thin: parses arguments, calls :mod:`jobs.operations`, :mod:`jobs.dead_letters`
and :mod:`jobs.services`, and prints a table or, with ``--json``, JSON.

Exit codes: 0 done/healthy, 1 unhealthy (``ping``), 2 bad usage or a missing
``--yes``, 3 not found, 4 not allowed in the job's current status, 5 Redis or
the database unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from jobs import dead_letters as dl
from jobs import operations as ops
from jobs.conf import jobs_settings
from jobs.errors import InvalidTransition, JobNotFound
from jobs.models import Job
from jobs.redaction import redact
from jobs.services import job_cancel, job_retry
from tenants.models import Organization

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5


class Command(BaseCommand):
    help = (
        "Operate the job system: status, queues, inspect, stats, purge, dead-letters, "
        "retry, cancel, ping. Add --json for machine-readable output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        _sub(sub, "status", "workers alive; queues, depths, dead letters")
        _sub(sub, "queues", "every queue with its priority bands")
        p = _sub(sub, "inspect", "active jobs with their worker and runtime", org=True)
        p.add_argument("--running", action="store_true", help="only running jobs")
        p.add_argument("--limit", type=int, default=50, help="at most this many jobs (50)")
        _sub(sub, "stats", "throughput and failure rate per type (1h, 24h)", org=True)
        p = _sub(sub, "purge", "delete a queue's waiting messages; cancel their jobs")
        p.add_argument("queue")
        p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
        p = _sub(sub, "ping", "exit 0 when this host's workers heartbeat (healthcheck)")
        p.add_argument("--host", help="check this host instead of this machine")
        p.add_argument("--min-workers", type=int, default=1, help="processes required (1)")
        for name, help_text in (
            ("retry", "queue a failed or cancelled job again"),
            ("cancel", "cancel a queued, retrying or running job"),
        ):
            p = _sub(sub, name, help_text)
            p.add_argument("job_id", metavar="ID")

        dead = sub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
        dsub = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
        p = _sub(dsub, "list", "dead letters, newest first", org=True)
        p.add_argument("--type", dest="job_type", metavar="T")
        p.add_argument("--queue")
        p.add_argument("--limit", type=int, default=50, help="at most this many (50)")
        p = _sub(dsub, "show", "one dead letter in full")
        p.add_argument("job_id", metavar="ID")
        p = _sub(dsub, "replay", "queue dead letters again", org=True)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("job_id", metavar="ID", nargs="?")
        which.add_argument("--all", action="store_true", help="every dead letter (see filters)")
        which.add_argument("--type", dest="job_type", metavar="T", help="every dead letter of T")
        p.add_argument("--queue", help="only dead letters of this queue")
        p = _sub(dsub, "purge", "drop dead letters (their failed rows stay)", org=True)
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
        except ops.UnknownQueue as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None

    # --- subcommands -----------------------------------------------------------------------

    def cmd_status(self, options: dict[str, Any]) -> None:
        status = ops.system_status()
        if self.as_json:
            self._json(
                {
                    "workers": [_asdict(w) for w in status.workers],
                    "queues": [
                        {**_asdict(q.stats), "dead_letters": q.dead_letters} for q in status.queues
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
                f"seen {_age(w.seconds_since_seen)} ago, up {_age(time.time() - w.started_at)}"
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
                    _age(q.stats.oldest_ready_age_seconds),
                ]
                for q in status.queues
            ],
        )

    def cmd_queues(self, options: dict[str, Any]) -> None:
        status = ops.system_status()
        if self.as_json:
            self._json([_asdict(q.stats) for q in status.queues])
            return
        rows = []
        for q in status.queues:
            s = q.stats
            urgent, normal, bulk = (s.bands.get(b, 0) for b in _bands(s.queue))
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
                    _age(s.oldest_ready_age_seconds),
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
            self._json([_asdict(r) for r in rows])
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
                    _age(r.runtime_seconds),
                ]
                for r in rows
            ],
        )

    def cmd_stats(self, options: dict[str, Any]) -> None:
        rows = ops.job_type_stats(organization=self._organization(options))
        if self.as_json:
            self._json([_asdict(r) for r in rows])
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
                    _age(r.avg_duration_seconds),
                ]
                for r in rows
            ],
        )

    def cmd_purge(self, options: dict[str, Any]) -> None:
        queue = options["queue"]
        if not options["yes"]:
            stats = {s.stats.queue: s.stats for s in ops.system_status().queues}
            if queue not in stats:
                raise ops.UnknownQueue(f"Unknown queue {queue!r}. Choose from: {', '.join(stats)}.")
            s = stats[queue]
            raise CommandError(
                f"This deletes {s.ready} waiting and {s.delayed} delayed message(s) of queue "
                f"{queue!r} and cancels their jobs. Run `python manage.py jobs purge {queue} --yes` "
                "to confirm.",
                returncode=EXIT_USAGE,
            )
        result = ops.queue_purge(queue=queue, via="cli", progress=self._progress("cancelling"))
        if self.as_json:
            self._json(_asdict(result))
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
        import socket

        host = options["host"] or socket.gethostname()
        found = ops.workers_on_host(host=host)
        healthy = len(found) >= options["min_workers"]
        if self.as_json:
            self._json({"host": host, "healthy": healthy, "workers": [_asdict(w) for w in found]})
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
                f"(latest {_age(newest)} ago)."
            )

    def cmd_retry(self, options: dict[str, Any]) -> None:
        job = job_retry(job=self._job(options["job_id"]), enforce_limits=False, via="cli")
        self._job_done(job, f"Job {job.pk} queued again ({job.job_type}).")

    def cmd_cancel(self, options: dict[str, Any]) -> None:
        job = job_cancel(job=self._job(options["job_id"]), via="cli")
        verb = "cancelled" if job.status == "cancelled" else "asked to stop (it is running)"
        self._job_done(job, f"Job {job.pk} {verb}.")

    def cmd_dead_letters_list(self, options: dict[str, Any]) -> None:
        qs = dl.dead_letters(
            organization=self._organization(options),
            job_type=options["job_type"],
            queue=options["queue"],
        ).select_related("organization")
        total = qs.count()
        jobs = list(qs[: options["limit"]])
        if self.as_json:
            self._json({"total": total, "dead_letters": [_job_summary(j) for j in jobs]})
            return
        if not total:
            self.stdout.write("No dead letters.")
            return
        self._table(
            ["JOB", "TYPE", "QUEUE", "ORG", "FAILED AT", "ATTEMPTS", "ERROR"],
            [
                [
                    j.pk,
                    j.job_type,
                    j.queue,
                    j.organization.slug if j.organization else "-",
                    _when(j.dead_lettered_at),
                    j.attempts,
                    _clip(f"{j.error_type}: {redact(j.error_message)}", 60),
                ]
                for j in jobs
            ],
        )
        if total > len(jobs):
            self.stdout.write(f"… {total - len(jobs)} more; use --limit, --type or --queue.")

    def cmd_dead_letters_show(self, options: dict[str, Any]) -> None:
        job = dl.dead_letter_get(job_id=self._job_id(options["job_id"]))
        attempts = list(job.attempt_set.order_by("number"))
        events = list(job.events.order_by("created_at"))
        data = {
            **_job_summary(job),
            "payload": redact(job.payload),
            "error_traceback": redact(job.error_traceback),
            "attempt_history": [
                {
                    "number": a.number,
                    "worker_id": a.worker_id,
                    "started_at": a.started_at,
                    "finished_at": a.finished_at,
                    "outcome": a.outcome,
                    "error": redact(f"{a.error_type}: {a.error_message}" if a.error_type else ""),
                }
                for a in attempts
            ],
            "events": [
                {"kind": e.kind, "via": e.via, "at": e.created_at, "detail": e.detail}
                for e in events
            ],
        }
        if self.as_json:
            self._json(data)
            return
        for key in (
            "id",
            "job_type",
            "queue",
            "organization",
            "priority",
            "attempts",
            "max_retries",
            "created_at",
            "dead_lettered_at",
            "error_type",
            "error_message",
        ):
            self.stdout.write(f"{key.replace('_', ' ') + ':':<18}{_fmt(data[key])}")
        self.stdout.write(f"{'payload:':<18}{json.dumps(data['payload'], sort_keys=True)}")
        self.stdout.write("\nAttempts:")
        self._table(
            ["#", "WORKER", "STARTED", "OUTCOME", "ERROR"],
            [
                [
                    a["number"],
                    a["worker_id"],
                    _when(a["started_at"]),
                    a["outcome"],
                    _clip(a["error"], 60),
                ]
                for a in data["attempt_history"]
            ],
        )
        if data["error_traceback"]:
            self.stdout.write("\nTraceback of the last attempt:\n" + data["error_traceback"])

    def cmd_dead_letters_replay(self, options: dict[str, Any]) -> None:
        if options["job_id"]:
            jobs: Any = [dl.dead_letter_get(job_id=self._job_id(options["job_id"]))]
        else:
            jobs = dl.dead_letters(
                organization=self._organization(options),
                job_type=options["job_type"],
                queue=options["queue"],
            )
        result = dl.dead_letters_replay(jobs=jobs, via="cli", progress=self._progress("replaying"))
        if self.as_json:
            self._json(_asdict(result))
            return
        self.stdout.write(f"Replayed {result.done} dead letter(s).")
        if result.skipped:
            self.stdout.write(f"{result.skipped} were no longer dead letters and were skipped.")

    def cmd_dead_letters_purge(self, options: dict[str, Any]) -> None:
        qs = dl.dead_letters(
            organization=self._organization(options),
            job_type=options["job_type"],
            queue=options["queue"],
        )
        if not options["yes"]:
            raise CommandError(
                f"This drops {qs.count()} dead letter(s) from the list and from Redis (their failed "
                "job rows stay). Add --yes to confirm.",
                returncode=EXIT_USAGE,
            )
        result = dl.dead_letters_purge(jobs=qs, via="cli", progress=self._progress("purging"))
        if self.as_json:
            self._json(_asdict(result))
            return
        self.stdout.write(f"Purged {result.done} dead letter(s); their job rows stay as failed.")

    # --- helpers ---------------------------------------------------------------------------

    def _job_id(self, raw: str) -> str:
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise CommandError(
                f"{raw!r} is not a job id; job ids are UUIDs such as "
                "'3f2c9b1e-8a4d-4c1b-9a57-2f1e0d6c7b8a' (see `python manage.py jobs inspect`).",
                returncode=EXIT_USAGE,
            ) from None

    def _job(self, raw: str) -> Job:
        job = Job.objects.filter(pk=self._job_id(raw)).first()
        if job is None:
            raise JobNotFound(
                f"No job with id {raw!r}. Check the id with `python manage.py jobs inspect`."
            )
        return job

    def _organization(self, options: dict[str, Any]) -> Organization | None:
        slug = options.get("organization")
        if not slug:
            return None
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            raise CommandError(
                f"No organization with slug {slug!r}. Create it with `python manage.py "
                "createorganization`, or check the slug in the admin.",
                returncode=EXIT_NOT_FOUND,
            )
        return org

    def _job_done(self, job: Job, text: str) -> None:
        if self.as_json:
            self._json(_job_summary(job))
        else:
            self.stdout.write(text)

    def _progress(self, label: str) -> Callable[[int, int], None]:
        """Progress on stderr (stdout stays clean for --json), at most a few lines a second."""
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < 0.5:
                return
            last[0] = now
            percent = 100 * done // total if total else 100
            self.stderr.write(f"{label}: {done}/{total} ({percent}%)")

        return report

    def _json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, default=_json_default, indent=2, sort_keys=True))

    def _table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for row in cells:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )


def _sub(
    subparsers: Any, name: str, help_text: str, *, org: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if org:
        parser.add_argument("--organization", metavar="SLUG", help="only this organization's jobs")
    return parser


def _bands(queue: str) -> list[str]:
    from jobs.queues import band_queue_names

    return band_queue_names(queue)


def _asdict(obj: Any) -> dict[str, Any]:
    data = dataclasses.asdict(obj)
    if hasattr(obj, "seconds_since_seen"):
        data["seconds_since_seen"] = round(obj.seconds_since_seen, 3)
    return data


def _job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "job_type": job.job_type,
        "queue": job.queue,
        "organization": job.organization.slug if job.organization_id and job.organization else None,
        "status": job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "dead_lettered_at": job.dead_lettered_at,
        "error_type": job.error_type,
        "error_message": redact(job.error_message),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return _when(value)
    return str(value)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
