"""The worker's half of the ``django.tasks`` backend: run one attempt of an enqueued task."""

from __future__ import annotations

from traceback import format_exception
from typing import Any

from django.tasks import TaskContext, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from jobs.backends.json_values import json_value_problem
from jobs.backends.results import TASK_JOB_TYPE, load_task, result_from_job, send_task_signal
from jobs.errors import JobCancelled, PermanentJobError
from jobs.runtime import current_job, encode_result
from jobs.selectors.jobs import job_find


def task_run(
    *,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
    queue_name: str,
    priority: int,
    run_after: str | None = None,
) -> Any:
    """Run one attempt of an enqueued task on the worker (the body of ``django_tasks.run``).

    Sends ``task_started`` and ``task_finished`` around the call. A failed attempt
    that will be retried finishes as READY; the last one as FAILED.
    """
    ctx = current_job()
    if ctx is None:
        raise RuntimeError(f"{TASK_JOB_TYPE} runs only on a worker, inside a job.")
    task_obj = load_task(
        {
            "task": task,
            "backend": backend,
            "queue_name": queue_name,
            "priority": priority,
            "run_after": run_after,
        }
    )
    job = job_find(job_id=ctx.job_id)
    result = result_from_job(job, task=task_obj)
    object.__setattr__(result, "status", TaskResultStatus.RUNNING)
    sender = type(task_obj.get_backend())
    send_task_signal(task_started, sender, result)
    try:
        # The context is passed explicitly: nothing relies on ContextVars reaching
        # async_to_sync's event loop for an async task.
        if task_obj.takes_context:
            raw = task_obj.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            raw = task_obj.call(*args, **kwargs)
        value = normalize_json(raw)
        problem = json_value_problem(value, name="return value")
        if problem:
            raise TypeError(f"Task {task!r} returned what JSON cannot hold: {problem}.")
        encode_result(value)  # refuse what the ledger cannot store before reporting success
    except BaseException as exc:
        last = isinstance(exc, PermanentJobError | JobCancelled) or ctx.retries >= job.max_retries
        result.errors.append(
            TaskError(
                exception_class_path=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback="".join(format_exception(exc)),
            )
        )
        object.__setattr__(
            result, "status", TaskResultStatus.FAILED if last else TaskResultStatus.READY
        )
        if last:
            object.__setattr__(result, "finished_at", timezone.now())
        send_task_signal(task_finished, sender, result)
        raise
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    send_task_signal(task_finished, sender, result)
    return value
