"""``django.tasks`` tasks of the test suite, mirroring Django's own ``tests/tasks/tasks.py``.

They run through ``jobs.backends.DramatiqBackend`` (``TASKS`` in ``tests/settings.py``).
"""

from __future__ import annotations

from typing import Any

from django.tasks import TaskContext, task

from jobs.runtime import current_job
from tenants.context import get_organization_id
from tenants.models import Organization


@task()
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task()
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
async def calculate_meaning_of_life_async() -> int:
    return 42


@task()
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task()
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value() -> Any:
    # A non-JSON return value fails the task, as with Django's own backends.
    return object()


@task(takes_context=True)
def get_task_id(context: TaskContext[Any, Any]) -> str:
    return context.task_result.id


@task(takes_context=True)
async def get_task_id_async(context: TaskContext[Any, Any]) -> str:
    return context.task_result.id


@task(takes_context=True)
def check_context(context: TaskContext[Any, Any], attempt: int) -> None:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt


@task(backend="retrying", takes_context=True)
def fails_on_first_attempt(context: TaskContext[Any, Any]) -> dict[str, Any]:
    if context.attempt == 1:
        raise ValueError("first attempt fails on purpose")
    return {"attempt": context.attempt, "worker_ids": len(context.task_result.worker_ids)}


@task(backend="retrying")
def always_fails() -> None:
    raise ValueError("fails on every attempt")


@task()
def whoami() -> dict[str, Any]:
    job = current_job()
    return {"organization_id": get_organization_id(), "job_id": job.job_id if job else None}


@task()
async def whoami_async() -> dict[str, Any]:
    job = current_job()
    return {
        "organization_id": get_organization_id(),
        "job_id": job.job_id if job else None,
        "organizations": await Organization.objects.acount(),
    }


@task(queue_name="email")
def email_queue_task() -> str:
    return "sent"


@task(backend="send_now")
def send_now_task() -> str:
    return "ran"


@task()
def failing_task_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("This task failed due to KeyboardInterrupt")


@task()
def returns_nan() -> float:
    # JSON has no NaN: the task fails with TypeError rather than store something else.
    return float("nan")


@task()
def returns_int_keys() -> dict[int, str]:
    # JSON would turn the key into "1": the task fails with TypeError instead.
    return {1: "a"}
