"""Retry and cancel from the job admin: a confirmation page, then the services.

The admin never restates when a job may be retried or cancelled: it asks the
services (:func:`jobs.services.control.job_retry_refusal`,
:func:`~jobs.services.control.job_cancel_refusal`) to plan, and the services
decide again when the action runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from jobs.admin.common import short_id
from jobs.errors import InvalidTransition
from jobs.models import Job
from jobs.services.control import job_cancel, job_cancel_refusal, job_retry, job_retry_refusal


@dataclass
class ActionPlan:
    """Which selected jobs an action will change, and which it skips and why."""

    verb: str
    apply: list[Job] = field(default_factory=list)
    skip: list[tuple[Job, str]] = field(default_factory=list)


def _plan(verb: str, refusal: Callable[[Job], str | None], jobs: Sequence[Job]) -> ActionPlan:
    plan = ActionPlan(verb=verb)
    for job in jobs:
        reason = refusal(job)
        if reason is None:
            plan.apply.append(job)
        else:
            plan.skip.append((job, reason))
    return plan


def plan_retry(jobs: Sequence[Job]) -> ActionPlan:
    return _plan("retry", job_retry_refusal, jobs)


def plan_cancel(jobs: Sequence[Job]) -> ActionPlan:
    return _plan("cancel", job_cancel_refusal, jobs)


_OPERATIONS: dict[str, tuple[Callable[[Sequence[Job]], ActionPlan], str, str]] = {
    # verb: (planner, permission, past tense)
    "retry": (plan_retry, "jobs.retry_job", "Retried"),
    "cancel": (plan_cancel, "jobs.cancel_job", "Cancelled"),
}


class JobActions(admin.ModelAdmin[Job]):
    """The retry and cancel actions of the job admin, for many jobs or one."""

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("jobs.retry_job"))

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("jobs.cancel_job"))

    def _scoped_or_404(self, request: HttpRequest, object_id: str) -> Job:
        raise NotImplementedError

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
            shown = "; ".join(f"{short_id(job.pk)} ({reason})" for job, reason in skipped[:20])
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
