"""``django_tasks.run``: runs a ``django.tasks`` task enqueued through ``jobs.backends.DramatiqBackend``."""

from __future__ import annotations

from typing import Any

from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from rest_framework import serializers

from jobs.backends import TASK_JOB_TYPE, task_run
from jobs.payloads import PayloadSerializer
from jobs.registry import job_type


class TaskPayload(PayloadSerializer):
    """The task to run (its module path), its arguments and the options it was enqueued with."""

    task = serializers.CharField(max_length=500)
    args = serializers.ListField(child=serializers.JSONField(), default=list)
    kwargs = serializers.DictField(child=serializers.JSONField(), default=dict)
    backend = serializers.CharField(max_length=100)
    queue_name = serializers.CharField(max_length=100)
    priority = serializers.IntegerField(min_value=TASK_MIN_PRIORITY, max_value=TASK_MAX_PRIORITY)
    run_after = serializers.CharField(max_length=64, allow_null=True, default=None)


@job_type(
    TASK_JOB_TYPE,
    queue="default",  # the home queue; each task is sent to its own queue_name
    payload=TaskPayload,
    public=False,
    max_retries=0,  # each job's budget comes from the backend's OPTIONS["max_retries"]
    description="Run a django.tasks task (the payload's 'task' is its module path).",
)
def run_django_task(
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
    queue_name: str,
    priority: int,
    run_after: str | None = None,
) -> Any:
    """Import the task and run it with its arguments."""
    return task_run(
        task=task,
        args=args,
        kwargs=kwargs,
        backend=backend,
        queue_name=queue_name,
        priority=priority,
        run_after=run_after,
    )
