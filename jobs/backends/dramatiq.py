"""A ``django.tasks`` backend that runs any app's ``@task`` functions on our workers.

Configure it in settings::

    TASKS = {
        "default": {
            "BACKEND": "jobs.backends.DramatiqBackend",
            "QUEUES": ["default", "email"],  # [] allows every queue workers consume
            "OPTIONS": {"enqueue_on_commit": True, "max_retries": 0},
        }
    }

``enqueue()`` writes a ledger ``Job`` of the internal type ``django_tasks.run``
through :func:`jobs.services.job_submit`, so the task is a job like any other
(admin, API, retries, tenant context, recovery). The payload names the task
(``payload["task"]`` is its module path) and carries its arguments. The
worker imports the task and calls it; ``get_result()`` reads the ledger back
into a :class:`~django.tasks.TaskResult`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import (
    DEFAULT_TASK_QUEUE_NAME,
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
)
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.json import normalize_json

from jobs.backends.json_values import json_value_problem
from jobs.backends.results import (
    TASK_JOB_TYPE,
    load_task,
    result_from_job,
    send_task_signal,
    task_job,
)
from jobs.conf import jobs_settings
from jobs.errors import InvalidPayload
from jobs.payload_limits import depth_problem
from jobs.queues import CONSUMED_QUEUES, MAX_PRIORITY, MIN_PRIORITY
from jobs.services.submission import MAX_DELAY, job_submit
from tenants.context import get_organization_id
from tenants.models import Organization

logger = logging.getLogger(__name__)


#: OPTIONS this backend understands, with their defaults.
OPTION_DEFAULTS: dict[str, Any] = {"enqueue_on_commit": True, "max_retries": 0}
MAX_TASK_RETRIES = 100


def job_priority_of(task_priority: int) -> int:
    """Map a Django task priority (-100…100, default 0) onto ours (0…10, default 5).

    Bands: 30…100 is urgent (7-10), -30…29 normal (4-6), -100…-31 bulk (0-3).
    """
    if not TASK_MIN_PRIORITY <= task_priority <= TASK_MAX_PRIORITY:
        raise ValueError(
            f"priority {task_priority!r} is outside {TASK_MIN_PRIORITY}…{TASK_MAX_PRIORITY}."
        )
    return max(MIN_PRIORITY, min(MAX_PRIORITY, (task_priority + 110) // 20))


class DramatiqBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on Dramatiq workers, with the job ledger as result store.

    Parameters (``TASKS[alias]``):
      QUEUES: task queue names allowed; each must be one of our consumed queues.
        Absent means ``["default"]`` (as in Django); ``[]`` allows every consumed queue.
      OPTIONS.enqueue_on_commit: send after the surrounding transaction commits
        (default True). False sends at once; the task may then run even if the
        transaction rolls back.
      OPTIONS.max_retries: retries after a failed attempt (default 0, as Django
        tasks run once); backoff follows ``JOBS_DEFAULT_MIN/MAX_BACKOFF_MS``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._params = params

    # --- configuration ------------------------------------------------------

    @property
    def enqueue_on_commit(self) -> bool:
        return bool(self._option("enqueue_on_commit"))

    @property
    def max_retries(self) -> int:
        return int(self._option("max_retries"))

    def _option(self, name: str) -> Any:
        problems = _option_problems(self._params)
        if problems:
            raise ImproperlyConfigured(f"TASKS[{self.alias!r}]: {problems[0]}")
        return self.options.get(name, OPTION_DEFAULTS[name])

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Report an unknown queue or a bad option of this backend's configuration."""
        messages: list[checks.CheckMessage] = []
        queues = self._params.get("QUEUES", [DEFAULT_TASK_QUEUE_NAME])
        if not isinstance(queues, list | tuple) or not all(isinstance(q, str) for q in queues):
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['QUEUES'] must be a list of queue names, "
                    f"not {queues!r}.",
                    hint=f"Use names from: {', '.join(CONSUMED_QUEUES)}.",
                    id="jobs.E101",
                )
            )
        else:
            for queue in queues:
                if queue not in CONSUMED_QUEUES:
                    messages.append(
                        checks.Error(
                            f"TASKS[{self.alias!r}]['QUEUES'] names {queue!r}, which is not "
                            "a queue our workers consume.",
                            hint=f"Use names from: {', '.join(CONSUMED_QUEUES)}.",
                            id="jobs.E102",
                        )
                    )
        messages.extend(
            checks.Error(f"TASKS[{self.alias!r}]: {problem}", id="jobs.E103")
            for problem in _option_problems(self._params)
        )
        return messages

    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        if task.queue_name not in CONSUMED_QUEUES:
            raise InvalidTask(
                f"Queue {task.queue_name!r} is not a queue our workers consume; "
                f"use one of {', '.join(CONSUMED_QUEUES)}."
            )

    # --- enqueue ------------------------------------------------------------

    def enqueue[**P, R](
        self, task: Task[P, R], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Write the task's ledger row and send it (after commit, unless configured not to)."""
        self.validate_task(task)
        delay = _delay_until(task.run_after)
        payload = {
            "task": task.module_path,
            "args": _json_arguments(task, "args", list(args)),
            "kwargs": _json_arguments(task, "kwargs", dict(kwargs)),
            "backend": self.alias,
            "queue_name": task.queue_name,
            "priority": task.priority,
            "run_after": task.run_after.isoformat() if task.run_after else None,
        }
        on_commit = self.enqueue_on_commit
        job = job_submit(
            job_type=TASK_JOB_TYPE,
            payload=payload,
            organization=_current_organization(),
            priority=job_priority_of(task.priority),
            delay=delay,
            max_retries=self.max_retries,
            queue=task.queue_name,
            send_on_commit=on_commit,
        ).job
        result: TaskResult[P, R] = TaskResult(
            task=task,
            id=str(job.pk),
            status=TaskResultStatus.READY,
            enqueued_at=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=payload["args"],
            kwargs=payload["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

        def announce() -> None:
            object.__setattr__(result, "enqueued_at", job.created_at)
            send_task_signal(task_enqueued, type(self), result)

        if on_commit:
            # Registered after job_submit's own callback, so it runs once the message is sent.
            transaction.on_commit(announce)
        else:
            announce()
        return result

    # --- results ------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """The task's result as the ledger has it (status, return value, errors, attempts).

        Inside a tenant context only that organization's tasks are found.
        """
        job = task_job(result_id, organization_id=get_organization_id())
        return result_from_job(job, task=load_task(job.payload))


def _option_problems(params: dict[str, Any]) -> list[str]:
    options = params.get("OPTIONS", {})
    if not isinstance(options, dict):
        return [f"OPTIONS must be a dict, not {type(options).__name__}."]
    problems = [
        f"unknown option {name!r} in OPTIONS; this backend takes: "
        f"{', '.join(sorted(OPTION_DEFAULTS))}."
        for name in sorted(set(options) - set(OPTION_DEFAULTS))
    ]
    on_commit = options.get("enqueue_on_commit", True)
    if not isinstance(on_commit, bool):
        problems.append(f"OPTIONS['enqueue_on_commit'] must be True or False, not {on_commit!r}.")
    retries = options.get("max_retries", 0)
    if (
        isinstance(retries, bool)
        or not isinstance(retries, int)
        or not 0 <= retries <= MAX_TASK_RETRIES
    ):
        problems.append(
            f"OPTIONS['max_retries'] must be a whole number from 0 to {MAX_TASK_RETRIES}, "
            f"not {retries!r}."
        )
    return problems


def _delay_until(run_after: datetime | None) -> timedelta | None:
    if run_after is None:
        return None
    delay = run_after - timezone.now()
    if delay > MAX_DELAY:
        raise InvalidTask(
            f"run_after {run_after.isoformat()} is more than {MAX_DELAY.days} days ahead; "
            "schedule it later, or use a periodic job."
        )
    return delay if delay > timedelta(0) else None


def _json_arguments(task: Task[..., Any], name: str, value: Any) -> Any:
    try:
        normalized = normalize_json(value)
        problem = json_value_problem(normalized, name=name)
        if problem:
            raise TypeError(problem)
        return normalized
    except RecursionError:
        # normalize_json recurses; submission refuses what is nested beyond its limit.
        limit = jobs_settings.max_payload_depth
        raise InvalidPayload(
            f"The {name} of task {task.module_path!r} are nested too deeply: {depth_problem(limit)}",
            errors={"payload": [depth_problem(limit)]},
        ) from None
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The {name} of task {task.module_path!r} must be JSON-safe "
            f"(strings, numbers, booleans, None, lists, dicts): {exc}. "
            "Pass ids rather than objects."
        ) from None


def _current_organization() -> Organization | None:
    organization_id = get_organization_id()
    if organization_id is None:
        return None
    return Organization.objects.get(pk=organization_id)
