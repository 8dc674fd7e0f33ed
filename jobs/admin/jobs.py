"""The job admin: history, detail, retry and cancel, scoped by organization.

Everything a job carries is user data: it is rendered through ``format_html``
(which escapes) and redacted (``jobs.redaction``); nothing here calls
``mark_safe`` on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from jobs.admin.lookups import declared_lookups
from jobs.admin.pagination import EstimatedCountPaginator
from jobs.errors import InvalidTransition
from jobs.models import (
    ACTIVE_STATUSES,
    Job,
    JobAttempt,
    JobEvent,
    JobStatus,
)
from jobs.queues import QUEUES
from jobs.redaction import redact, redact_text
from jobs.registry import all_job_types
from jobs.services import job_cancel, job_retry
from tenants.models import Organization
from tenants.selectors import organizations_for_user

_RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


def visible_organizations(request: HttpRequest) -> QuerySet[Organization] | None:
    """The organizations a request's user may see; None means every job (superusers)."""
    if request.user.is_superuser:
        return None
    return organizations_for_user(user=request.user)


def status_badge(status: str) -> SafeString:
    """A coloured badge; the colours are in jobs/admin.css (the CSP refuses style attributes)."""
    return format_html(
        '<span class="job-status job-status-{}">{}</span>',
        status,
        JobStatus(status).label if status in JobStatus else status,
    )


def pretty_json(value: Any) -> SafeString:
    """Redacted, indented JSON in an escaped ``<pre>``."""
    if value is None:
        return format_html("<span>{}</span>", "—")
    text = json.dumps(redact(value), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="job-json">{}</pre>', text)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# --- Filters -----------------------------------------------------------------
class OrganizationFilter(admin.SimpleListFilter):
    """Only the organizations the user belongs to (Django's would list them all)."""

    title = "organization"
    parameter_name = "organization"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(str(o.pk), o.slug) for o in organizations_for_user(user=request.user)]
        if request.user.is_superuser:
            choices.append(("system", "(system jobs)"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "system":
            return queryset.filter(organization__isnull=True)
        if value and value.isdigit():
            return queryset.filter(organization_id=int(value))
        return queryset


class JobTypeFilter(admin.SimpleListFilter):
    """Job types from the registry: no ``SELECT DISTINCT`` over a million rows."""

    title = "type"
    parameter_name = "job_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(t.name, t.name) for t in sorted(all_job_types(), key=lambda t: t.name)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(job_type=value) if value else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(q, q) for q in QUEUES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset


# --- Inlines -------------------------------------------------------------------
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


# --- Actions -------------------------------------------------------------------
@dataclass
class ActionPlan:
    """Which selected jobs an action will change, and which it skips and why."""

    verb: str
    apply: list[Job] = field(default_factory=list)
    skip: list[tuple[Job, str]] = field(default_factory=list)


def plan_retry(jobs: Sequence[Job]) -> ActionPlan:
    plan = ActionPlan(verb="retry")
    for job in jobs:
        if job.status in _RETRYABLE:
            plan.apply.append(job)
        else:
            plan.skip.append(
                (job, f"it is {job.status}; only failed or cancelled jobs can be retried")
            )
    return plan


def plan_cancel(jobs: Sequence[Job]) -> ActionPlan:
    plan = ActionPlan(verb="cancel")
    for job in jobs:
        if job.status not in ACTIVE_STATUSES:
            plan.skip.append((job, f"it already finished ({job.status})"))
        elif job.status == JobStatus.RUNNING and job.cancel_requested_at is not None:
            plan.skip.append((job, "a cancel was already requested"))
        else:
            plan.apply.append(job)
    return plan


_OPERATIONS: dict[str, tuple[Callable[[Sequence[Job]], ActionPlan], str, str]] = {
    # verb: (planner, permission, past tense)
    "retry": (plan_retry, "jobs.retry_job", "Retried"),
    "cancel": (plan_cancel, "jobs.cancel_job", "Cancelled"),
}


def _short(job_id: Any) -> str:
    return str(job_id)[:8]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = [
        "short_id",
        "job_type",
        "organization",
        "status_display",
        "attempts",
        "progress_display",
        "created_at",
        "duration",
        "error_summary",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", JobTypeFilter, QueueFilter, OrganizationFilter, "created_at"]
    list_select_related = ["organization"]
    search_fields = ["id", "idempotency_key", "error_message"]
    search_help_text = "A job id, an idempotency key, or words of the error message."
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    list_per_page = 50
    paginator = EstimatedCountPaginator
    # The "N total" link would run COUNT(*) over every row the user may see.
    show_full_result_count = False
    # Facet counts run one COUNT per filter choice over every row.
    show_facets = admin.ShowFacets.NEVER
    actions = ["retry_selected", "cancel_selected"]
    inlines = [JobAttemptInline, JobEventInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "organization",
                    "job_type",
                    "queue",
                    "priority",
                    "status_display",
                    "attempts_display",
                    "progress_display",
                    "progress_message",
                    "idempotency_key",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "created_at",
                    "scheduled_for",
                    "started_at",
                    "finished_at",
                    "duration",
                    "cancel_requested_at",
                    "dead_lettered_at",
                ]
            },
        ),
        ("Payload and result", {"fields": ["payload_display", "result_display"]}),
        ("Error", {"fields": ["error_type", "error_message_display", "traceback_display"]}),
        ("Timeline", {"fields": ["timeline"]}),
    ]
    # Jobs are read-only in the admin: every field shown is a read-only one.
    readonly_fields = [
        str(name)
        for _, options in fieldsets
        for name in options["fields"]  # flat field lists
    ]
    change_form_template = "admin/jobs/job/change_form.html"
    change_list_template = "admin/jobs/job/change_list.html"

    class Media:
        # Badges, progress bars and the job page's layout (no inline styles: see SECURE_CSP).
        css = {"all": ["jobs/admin.css"]}

    # --- scope and permissions ---------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        queryset = super().get_queryset(request)
        organizations = visible_organizations(request)
        if organizations is not None:
            queryset = queryset.filter(organization__in=organizations)
        match = request.resolver_match
        if match is not None and match.url_name == "jobs_job_changelist":
            # A payload may weigh 256 KiB: the list never shows it, so never reads it.
            queryset = queryset.defer("payload", "result", "error_traceback")
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Jobs are history: they change through retry and cancel, never through a form.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # Only the declared filters: a lookup on payload, result or error text
        # would reveal, by the rows it leaves, what this admin shows redacted.
        return lookup in declared_lookups(self, request)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("jobs.retry_job"))

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("jobs.cancel_job"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            job_id = uuid.UUID(term)
        except ValueError:
            pass
        else:
            return queryset.filter(pk=job_id), False
        return queryset.filter(Q(idempotency_key=term) | Q(error_message__icontains=term)), False

    def _scoped_or_404(self, request: HttpRequest, object_id: str) -> Job:
        try:
            pk = uuid.UUID(str(object_id))
        except ValueError:
            raise Http404("No such job.") from None
        job = self.get_queryset(request).filter(pk=pk).first()
        if job is None:
            # Another organization's job answers exactly like a job that does not exist.
            raise Http404("No such job.")
        return job

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self._scoped_or_404(request, object_id)
        context = {
            **(extra_context or {}),
            "can_retry": job.status in _RETRYABLE and self.has_retry_permission(request),
            "can_cancel": bool(plan_cancel([job]).apply) and self.has_cancel_permission(request),
        }
        return super().change_view(request, object_id, form_url, context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._scoped_or_404(request, object_id)
        return super().history_view(request, object_id, extra_context)

    # --- columns ---------------------------------------------------------------------
    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return _short(job.pk)

    @admin.display(description="status", ordering="status")
    def status_display(self, job: Job) -> SafeString:
        badge = status_badge(job.status)
        if job.status == JobStatus.RUNNING and job.cancel_requested_at is not None:
            return format_html("{} {}", badge, "(cancel requested)")
        return badge

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> SafeString:
        return format_html(
            '<progress class="job-progress" value="{}" max="100" title="{}">{}%</progress> {}%',
            job.progress,
            job.progress_message,
            job.progress,
            job.progress,
        )

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts} (up to {job.max_retries} retries)"

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        if job.started_at is not None and job.finished_at is None and job.status == "running":
            return human_duration((timezone.now() - job.started_at).total_seconds()) + " so far"
        return human_duration(job.duration_seconds)

    @admin.display(description="error")
    def error_summary(self, job: Job) -> str:
        if not job.error_type:
            return ""
        message = redact_text(job.error_message)
        if len(message) > 80:
            message = message[:79] + "…"
        return f"{job.error_type}: {message}"

    @admin.display(description="payload")
    def payload_display(self, job: Job) -> SafeString:
        return pretty_json(job.payload)

    @admin.display(description="result")
    def result_display(self, job: Job) -> SafeString:
        return pretty_json(job.result)

    @admin.display(description="error message")
    def error_message_display(self, job: Job) -> SafeString:
        if not job.error_message:
            return format_html("<span>{}</span>", "—")
        return format_html('<pre class="job-error">{}</pre>', redact_text(job.error_message))

    @admin.display(description="traceback")
    def traceback_display(self, job: Job) -> SafeString:
        if not job.error_traceback:
            return format_html("<span>{}</span>", "—")
        return format_html('<pre class="job-traceback">{}</pre>', redact_text(job.error_traceback))

    @admin.display(description="timeline")
    def timeline(self, job: Job) -> SafeString:
        rows = build_timeline(job)
        body = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], what, detail)
                for when, what, detail in rows
            ),
        )
        return format_html(
            '<table class="job-timeline"><thead><tr><th>when (UTC)</th><th>what</th>'
            "<th>detail</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    # --- actions ---------------------------------------------------------------------
    @admin.action(description="Retry selected jobs (failed or cancelled)", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self._confirm_and_run(request, queryset, "retry")

    @admin.action(
        description="Cancel selected jobs (queued, retrying or running)", permissions=["cancel"]
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self._confirm_and_run(request, queryset, "cancel")

    def _confirm_and_run(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        verb: str,
        *,
        single: Job | None = None,
    ) -> HttpResponse | None:
        planner, _permission, _past = _OPERATIONS[verb]
        jobs = list(queryset.select_related("organization").order_by("-created_at"))
        plan = planner(jobs)
        if request.POST.get("post") == "yes":
            self._run(request, plan)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Are you sure you want to {verb} these jobs?",
            "opts": self.model._meta,
            "plan": plan,
            "verb": verb,
            "action_name": f"{verb}_selected",
            "selected_ids": [str(job.pk) for job in jobs],
            "single": single,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/jobs/job/action_confirmation.html", context)

    def _run(self, request: HttpRequest, plan: ActionPlan) -> None:
        _planner, _permission, past = _OPERATIONS[plan.verb]
        user = request.user if isinstance(request.user, User) else None
        changed: list[Job] = []
        skipped = list(plan.skip)
        for job in plan.apply:
            try:
                if plan.verb == "retry":
                    job_retry(job=job, enforce_limits=False, user=user, via="admin")
                else:
                    job_cancel(job=job, user=user, via="admin")
            except InvalidTransition as exc:
                skipped.append((job, str(exc)))
            else:
                changed.append(job)
        if changed and user is not None:
            LogEntry.objects.log_actions(
                user_id=user.pk,
                queryset=changed,
                action_flag=CHANGE,
                change_message=f"{past} from the admin.",
            )
        noun = "job" if len(changed) == 1 else "jobs"
        messages.success(request, f"{past} {len(changed)} {noun}.")
        if skipped:
            shown = "; ".join(f"{_short(job.pk)} ({reason})" for job, reason in skipped[:20])
            more = f"; and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            messages.warning(request, f"Skipped {len(skipped)}: {shown}{more}.")

    def _single_job_action(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        _planner, permission, _past = _OPERATIONS[verb]
        if not request.user.has_perm(permission):
            raise Http404("No such action.")
        job = self._scoped_or_404(request, object_id)
        queryset = self.get_queryset(request).filter(pk=job.pk)
        response = self._confirm_and_run(request, queryset, verb, single=job)
        if response is not None:
            return response
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._single_job_action(request, object_id, "retry")

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._single_job_action(request, object_id, "cancel")

    def get_urls(self) -> list[URLPattern]:
        from jobs.admin.views import DashboardView, DeadLettersView

        wrap = self.admin_site.admin_view
        custom = [
            path(
                "dashboard/", wrap(DashboardView.as_view(model_admin=self)), name="jobs_dashboard"
            ),
            path(
                "dead-letters/",
                wrap(DeadLettersView.as_view(model_admin=self)),
                name="jobs_dead_letters",
            ),
            path("<path:object_id>/retry/", wrap(self.retry_view), name="jobs_job_retry"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="jobs_job_cancel"),
        ]
        return custom + super().get_urls()


def build_timeline(job: Job) -> list[tuple[datetime, str, str]]:
    """Everything that happened to a job, oldest first: ledger times, attempts, audit events."""
    rows: list[tuple[datetime, str, str]] = [(job.created_at, "submitted", f"queue {job.queue}")]
    if job.scheduled_for is not None:
        rows.append((job.scheduled_for, "scheduled for", ""))
    for attempt in job.attempt_set.all():
        rows.append((attempt.started_at, f"attempt {attempt.number} started", attempt.worker_id))
        if attempt.finished_at is not None:
            detail = (
                f"{attempt.error_type}: {redact_text(attempt.error_message)}"
                if attempt.error_type
                else ""
            )
            rows.append(
                (attempt.finished_at, f"attempt {attempt.number} {attempt.outcome}", detail)
            )
    for event in job.events.select_related("user").all():
        who = event.user.get_username() if event.user is not None else "system"
        rows.append((event.created_at, event.get_kind_display(), f"by {who} via {event.via}"))
    if job.cancel_requested_at is not None:
        rows.append((job.cancel_requested_at, "cancel requested", ""))
    if job.dead_lettered_at is not None:
        rows.append((job.dead_lettered_at, "dead-lettered", "retries exhausted"))
    if job.finished_at is not None:
        rows.append((job.finished_at, f"finished: {job.status}", ""))
    return sorted(rows, key=lambda row: row[0])
