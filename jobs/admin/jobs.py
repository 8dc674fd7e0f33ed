"""The job admin: history and detail, scoped by organization; retry and cancel (``actions``).

Everything a job carries is user data: it is rendered through ``format_html``
(which escapes) and redacted (``jobs.redaction``); nothing here calls
``mark_safe`` on it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.admin.actions import JobActions, plan_cancel
from jobs.admin.common import (
    human_duration,
    pretty_json,
    short_id,
    status_badge,
    visible_organizations,
)
from jobs.admin.filters import JobTypeFilter, OrganizationFilter, QueueFilter
from jobs.admin.inlines import JobAttemptInline, JobEventInline
from jobs.admin.lookups import declared_lookups
from jobs.admin.pagination import EstimatedCountPaginator
from jobs.admin.timeline import timeline_table
from jobs.admin.views import DashboardView, DeadLettersView
from jobs.models import Job, JobStatus
from jobs.redaction import redact_text
from jobs.selectors.jobs import jobs_with_shown_error_containing
from jobs.services.control import job_retry_refusal


@admin.register(Job)
class JobAdmin(JobActions):
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
                    "progress_message_display",
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
        # Error text as shown: the stored text would reveal what the page redacts.
        shown_error = jobs_with_shown_error_containing(queryset, term)
        return queryset.filter(Q(idempotency_key=term) | Q(pk__in=shown_error.values("pk"))), False

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
            "can_retry": job_retry_refusal(job) is None and self.has_retry_permission(request),
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
        return short_id(job.pk)

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
            redact_text(job.progress_message),
            job.progress,
            job.progress,
        )

    @admin.display(description="progress message")
    def progress_message_display(self, job: Job) -> str:
        return redact_text(job.progress_message)

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
        return timeline_table(job)

    def get_urls(self) -> list[URLPattern]:
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
