"""Inlines of a job's page: its attempts and its audit trail, read-only."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from jobs.models import Job, JobAttempt, JobEvent
from jobs.redaction import redact, redact_text


class _ReadOnlyInline:
    """Inline rows are history: never added, changed or deleted from the admin."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("jobs.view_job"))


class JobAttemptInline(_ReadOnlyInline, admin.TabularInline[JobAttempt, Job]):
    model = JobAttempt
    fields = ("number", "worker_id", "started_at", "finished_at", "outcome", "error")
    readonly_fields = fields
    ordering = ["number"]
    verbose_name_plural = "attempts"

    @admin.display(description="error")
    def error(self, attempt: JobAttempt) -> str:
        if not attempt.error_type:
            return ""
        return f"{attempt.error_type}: {redact_text(attempt.error_message)}"


class JobEventInline(_ReadOnlyInline, admin.TabularInline[JobEvent, Job]):
    model = JobEvent
    fields = ("created_at", "kind", "via", "user", "details")
    readonly_fields = fields
    ordering = ["-created_at"]
    verbose_name_plural = "audit trail"

    @admin.display(description="detail")
    def details(self, event: JobEvent) -> str:
        return json.dumps(redact(event.detail), sort_keys=True) if event.detail else ""
