"""Admin pages beyond the job list: the live dashboard and the dead letters."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View

from jobs.admin.charts import DEFAULT_WINDOW, WINDOWS, chart_window, throughput_chart
from jobs.admin.common import status_badge, visible_organizations
from jobs.conf import jobs_settings
from jobs.redaction import redact_text
from jobs.scheduler.overview import schedules_overview
from jobs.selectors import dashboard
from jobs.selectors.dead_letters import (
    dead_letter_group,
    dead_letter_group_job_ids,
    dead_letter_groups,
)
from jobs.selectors.queues import queue_stats, workers
from jobs.services.dead_letters import (
    dead_letter_group_purge,
    dead_letter_group_replay,
    dead_letters_purge_all,
)

logger = logging.getLogger(__name__)


class _JobsAdminView(View):
    model_admin: ModelAdmin[Any] | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        assert self.model_admin is not None
        if not self.model_admin.has_view_permission(request):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def base_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        assert self.model_admin is not None
        return {
            **self.model_admin.admin_site.each_context(request),
            "title": title,
            "opts": self.model_admin.model._meta,
        }


class DashboardView(_JobsAdminView):
    """Queues, workers, throughput and failure rate, backlog and schedules; updates itself.

    The chart spans ``?window=`` (1h, 24h or 7d); ``?fragment=live`` answers the
    live part alone, which the page's script fetches to update itself in place.

    Queue depths and workers are shared by every organization, so only
    superusers see them; everything read from the ledger is scoped.
    """

    def get(self, request: HttpRequest) -> HttpResponse:
        organizations = visible_organizations(request)
        window = chart_window(request.GET.get("window"))
        day = dashboard.throughput_per_minute(organizations=organizations)
        day_chart = throughput_chart(day)
        if window.name == DEFAULT_WINDOW:
            chart = day_chart
        else:
            series = dashboard.throughput(
                organizations=organizations, span=window.span, bucket=window.bucket
            )
            chart = throughput_chart(series, window)
        last_hour = day[-60:]
        context = self.base_context(request, "Jobs dashboard")
        context.update(
            refresh_seconds=jobs_settings.dashboard_refresh_seconds,
            window=window,
            windows=WINDOWS.values(),
            updated_at=timezone.now(),
            day=day_chart,
            chart=chart,
            finished_last_hour=sum(m.finished for m in last_hour),
            failed_last_hour=sum(m.failed for m in last_hour),
            backlog=dashboard.backlog_per_organization(organizations=organizations),
            failures=[
                {
                    "job": job,
                    "badge": status_badge(job.status),
                    "error": f"{job.error_type}: {redact_text(job.error_message)[:200]}",
                }
                for job in dashboard.recent_failures(organizations=organizations)
            ],
            schedules=schedules_overview(),
            show_broker=request.user.is_superuser,
            redis_error=None,
            queues=[],
            workers=[],
        )
        if request.user.is_superuser:
            try:
                context["queues"] = queue_stats()
                context["workers"] = workers()
            except redis.RedisError as exc:
                logger.warning("The dashboard could not read Redis: %s", exc)
                context["redis_error"] = f"Redis is unreachable ({type(exc).__name__}: {exc})."
            context["total_ready"] = sum(q.ready for q in context["queues"])
            context["total_dead"] = sum(q.dead for q in context["queues"])
        # The page's script fetches the live part alone to update it in place.
        if request.GET.get("fragment") == "live":
            return TemplateResponse(request, "admin/jobs/dashboard_live.html", context)
        return TemplateResponse(request, "admin/jobs/dashboard.html", context)


class DeadLettersView(_JobsAdminView):
    """Failed jobs grouped by type and error; replay a group, purge Redis's copies."""

    def get(self, request: HttpRequest) -> HttpResponse:
        organizations = visible_organizations(request)
        redis_error = None
        try:
            groups = dead_letter_groups(organizations=organizations, count_in_redis=True)
        except redis.RedisError as exc:
            redis_error = f"Redis is unreachable ({type(exc).__name__}: {exc})."
            groups = dead_letter_groups(organizations=organizations)
        context = self.base_context(request, "Dead letters")
        context.update(
            groups=[{"group": g, "sample": redact_text(g.sample_message)[:300]} for g in groups],
            redis_error=redis_error,
            can_replay=request.user.has_perm("jobs.retry_job"),
            can_purge=request.user.has_perm("jobs.purge_dead_letters"),
            can_purge_all=request.user.is_superuser,
        )
        return TemplateResponse(request, "admin/jobs/dead_letters.html", context)

    def post(self, request: HttpRequest) -> HttpResponse:
        operation = request.POST.get("operation", "")
        permission = {
            "replay": "jobs.retry_job",
            "purge": "jobs.purge_dead_letters",
            "purge_all": "jobs.purge_dead_letters",
        }.get(operation)
        if permission is None:
            return HttpResponse(
                f"Unknown operation {operation!r}: use replay, purge or purge_all.",
                status=400,
                content_type="text/plain",
            )
        if not request.user.has_perm(permission) or (
            operation == "purge_all" and not request.user.is_superuser
        ):
            raise PermissionDenied
        organizations = visible_organizations(request)
        group = None
        if operation != "purge_all":
            group = dead_letter_group(
                key=request.POST.get("group", ""), organizations=organizations
            )
            if group is None:
                raise Http404("No such dead-letter group (it may have been replayed already).")
        if request.POST.get("post") != "yes":
            context = self.base_context(request, "Confirm")
            context.update(
                operation=operation,
                group=group,
                job_count=(
                    len(dead_letter_group_job_ids(group=group, organizations=organizations))
                    if group is not None
                    else None
                ),
            )
            return TemplateResponse(request, "admin/jobs/dead_letters_confirm.html", context)
        user = request.user if isinstance(request.user, User) else None
        if group is None:
            purged = dead_letters_purge_all(user=user, via="admin")
            messages.success(
                request, f"Purged {purged.redis_removed} dead-lettered message(s) from Redis."
            )
        elif operation == "replay":
            result = dead_letter_group_replay(
                group=group, organizations=organizations, user=user, via="admin"
            )
            messages.success(request, f"Replayed {result.done} job(s).")
            if result.skipped:
                messages.warning(
                    request,
                    f"Skipped {result.skipped}: no longer dead letters (replayed meanwhile).",
                )
        else:
            purged = dead_letter_group_purge(
                group=group, organizations=organizations, user=user, via="admin"
            )
            messages.success(
                request, f"Purged {purged.redis_removed} dead-lettered message(s) from Redis."
            )
        return HttpResponseRedirect(reverse("admin:jobs_dead_letters"))
