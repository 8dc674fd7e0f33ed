"""``manage.py jobs dead-letters …``: list, show, replay and purge dead letters."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from jobs.management.base import (
    EXIT_USAGE,
    OperatorCommand,
    asdict,
    clip,
    fmt,
    job_summary,
    when,
)
from jobs.redaction import redact
from jobs.selectors import dead_letters as dl
from jobs.services.dead_letters import dead_letters_purge, dead_letters_replay


class DeadLetterSubcommands(OperatorCommand):
    """The ``dead-letters`` subcommands of ``manage.py jobs``."""

    def cmd_dead_letters_list(self, options: dict[str, Any]) -> None:
        qs = dl.dead_letters(
            organization=self._organization(options),
            job_type=options["job_type"],
            queue=options["queue"],
        ).select_related("organization")
        total = qs.count()
        jobs = list(qs[: options["limit"]])
        if self.as_json:
            self._json({"total": total, "dead_letters": [job_summary(j) for j in jobs]})
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
                    when(j.dead_lettered_at),
                    j.attempts,
                    clip(f"{j.error_type}: {redact(j.error_message)}", 60),
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
            **job_summary(job),
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
            self.stdout.write(f"{key.replace('_', ' ') + ':':<18}{fmt(data[key])}")
        self.stdout.write(f"{'payload:':<18}{json.dumps(data['payload'], sort_keys=True)}")
        self.stdout.write("\nAttempts:")
        self._table(
            ["#", "WORKER", "STARTED", "OUTCOME", "ERROR"],
            [
                [
                    a["number"],
                    a["worker_id"],
                    when(a["started_at"]),
                    a["outcome"],
                    clip(a["error"], 60),
                ]
                for a in data["attempt_history"]
            ],
        )
        if data["error_traceback"]:
            self.stdout.write("\nTraceback of the last attempt:\n" + data["error_traceback"])

    def cmd_dead_letters_replay(self, options: dict[str, Any]) -> None:
        if options["job_id"]:
            ids = [str(dl.dead_letter_get(job_id=self._job_id(options["job_id"])).pk)]
        else:
            ids = dl.dead_letter_ids(
                organization=self._organization(options),
                job_type=options["job_type"],
                queue=options["queue"],
            )
        result = dead_letters_replay(job_ids=ids, via="cli", progress=self._progress("replaying"))
        if self.as_json:
            self._json(asdict(result))
            return
        self.stdout.write(f"Replayed {result.done} dead letter(s).")
        if result.skipped:
            self.stdout.write(f"{result.skipped} were no longer dead letters and were skipped.")

    def cmd_dead_letters_purge(self, options: dict[str, Any]) -> None:
        ids = dl.dead_letter_ids(
            organization=self._organization(options),
            job_type=options["job_type"],
            queue=options["queue"],
        )
        if not options["yes"]:
            raise CommandError(
                f"This drops {len(ids)} dead letter(s) from the list and from Redis (their failed "
                "job rows stay). Add --yes to confirm.",
                returncode=EXIT_USAGE,
            )
        result = dead_letters_purge(job_ids=ids, via="cli", progress=self._progress("purging"))
        if self.as_json:
            self._json(asdict(result))
            return
        self.stdout.write(f"Purged {result.done} dead letter(s); their job rows stay as failed.")
