"""What the operator commands share: exit codes, finding jobs and organizations, tables and JSON.

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

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job
from jobs.redaction import redact
from jobs.selectors.jobs import job_find
from tenants.errors import OrganizationNotFound
from tenants.models import Organization
from tenants.services import organization_get

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5


class OperatorCommand(BaseCommand):
    """A command that prints tables, or JSON with ``--json``."""

    as_json: bool = False

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
        return job_find(job_id=self._job_id(raw))

    def _organization(self, options: dict[str, Any]) -> Organization | None:
        slug = options.get("organization")
        if not slug:
            return None
        try:
            return organization_get(slug=slug)
        except OrganizationNotFound as exc:
            raise CommandError(str(exc), returncode=EXIT_NOT_FOUND) from None

    def _job_done(self, job: Job, text: str) -> None:
        if self.as_json:
            self._json(job_summary(job))
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
        self.stdout.write(json.dumps(data, default=json_default, indent=2, sort_keys=True))

    def _table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for row in cells:
            self.stdout.write(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )


def subparser(
    subparsers: Any, name: str, help_text: str, *, org: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if org:
        parser.add_argument("--organization", metavar="SLUG", help="only this organization's jobs")
    return parser


def asdict(obj: Any) -> dict[str, Any]:
    data = dataclasses.asdict(obj)
    if hasattr(obj, "seconds_since_seen"):
        data["seconds_since_seen"] = round(obj.seconds_since_seen, 3)
    return data


def job_summary(job: Job) -> dict[str, Any]:
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


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
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


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
