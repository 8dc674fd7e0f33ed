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

import builtins
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from traceback import format_exception
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import Signal
from django.tasks import TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import (
    DEFAULT_TASK_QUEUE_NAME,
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
    TaskError,
)
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from jobs.broker import CONSUMED_QUEUES
from jobs.conf import jobs_settings
from jobs.errors import InvalidPayload, JobCancelled, PermanentJobError
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.payload_limits import depth_problem
from jobs.queues import MAX_PRIORITY, MIN_PRIORITY
from jobs.runtime import current_job, encode_result
from jobs.services import job_submit
from jobs.services.submission import MAX_DELAY
from tenants.context import get_organization_id
from tenants.models import Organization

logger = logging.getLogger(__name__)

#: The internal job type every task runs as (registered in ``jobs/actors/django_tasks.py``).
TASK_JOB_TYPE = "django_tasks.run"

#: OPTIONS this backend understands, with their defaults.
OPTION_DEFAULTS: dict[str, Any] = {"enqueue_on_commit": True, "max_retries": 0}
MAX_TASK_RETRIES = 100

_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RETRYING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}

#: Attempt outcomes that count as an error of the task.
_ERROR_OUTCOMES = (AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT, AttemptOutcome.CANCELLED)

#: Where exceptions the worker raises on its own live, for errors recorded by short name.
_KNOWN_EXCEPTIONS = {
    "JobCancelled": "jobs.errors.JobCancelled",
    "SoftTimeLimitExceeded": "jobs.errors.SoftTimeLimitExceeded",
    "ResultTooLarge": "jobs.errors.ResultTooLarge",
    "ResultNotSerializable": "jobs.errors.ResultNotSerializable",
    "TimeLimitExceeded": "dramatiq.middleware.time_limit.TimeLimitExceeded",
}


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
            _send(task_enqueued, type(self), result)

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
        job = _task_job(result_id)
        return result_from_job(job, task=load_task(job.payload))


# --- the worker's half ----------------------------------------------------------


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
    job = Job.objects.get(pk=ctx.job_id)
    result = result_from_job(job, task=task_obj)
    object.__setattr__(result, "status", TaskResultStatus.RUNNING)
    sender = type(task_obj.get_backend())
    _send(task_started, sender, result)
    try:
        # The context is passed explicitly: nothing relies on ContextVars reaching
        # async_to_sync's event loop for an async task.
        if task_obj.takes_context:
            raw = task_obj.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            raw = task_obj.call(*args, **kwargs)
        value = normalize_json(raw)
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
        _send(task_finished, sender, result)
        raise
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    _send(task_finished, sender, result)
    return value


# --- ledger → TaskResult --------------------------------------------------------


def load_task(payload: dict[str, Any]) -> Task[..., Any]:
    """The Task a ledger payload names, with the options it was enqueued with."""
    path = payload["task"]
    try:
        obj = import_string(path)
    except ImportError as exc:
        raise InvalidTask(
            f"Cannot import task {path!r} ({exc}); deploy the code that defines it."
        ) from None
    if not isinstance(obj, Task):
        raise InvalidTask(f"{path!r} is not a Task; decorate the function with @task.")
    run_after = payload.get("run_after")
    return replace(
        obj,
        backend=payload["backend"],
        queue_name=payload["queue_name"],
        priority=payload["priority"],
        run_after=parse_datetime(run_after) if run_after else None,
    )


def result_from_job(job: Job, *, task: Task[..., Any]) -> TaskResult[..., Any]:
    """Build a TaskResult from a ledger row and its attempt rows."""
    payload = job.payload or {}
    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    status = _STATUS[JobStatus(job.status)]
    result: TaskResult[..., Any] = TaskResult(
        task=task,
        id=str(job.pk),
        status=status,
        enqueued_at=job.created_at,
        started_at=job.started_at,
        last_attempted_at=attempts[-1].started_at if attempts else None,
        finished_at=job.finished_at if status in _FINISHED else None,
        args=payload.get("args", []),
        kwargs=payload.get("kwargs", {}),
        backend=payload.get("backend", task.backend),
        errors=_errors(job, attempts),
        worker_ids=[a.worker_id for a in attempts],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


_FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)


def _errors(job: Job, attempts: list[JobAttempt]) -> list[TaskError]:
    # The ledger keeps the traceback of the latest failure only; earlier
    # attempts keep their error type and message.
    failing = [a for a in attempts if a.outcome in _ERROR_OUTCOMES]
    errors = []
    for index, attempt in enumerate(failing):
        latest = index == len(failing) - 1 and job.error_type == attempt.error_type
        errors.append(
            TaskError(
                exception_class_path=_exception_path(attempt.error_type, job.error_traceback),
                traceback=(
                    job.error_traceback
                    if latest and job.error_traceback
                    else _one_line(attempt.error_type, attempt.error_message)
                ),
            )
        )
    if not failing and job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.error_type:
        # Failed or cancelled without an attempt failing (expired, cancelled before it ran).
        errors.append(
            TaskError(
                exception_class_path=_exception_path(job.error_type, job.error_traceback),
                traceback=job.error_traceback or _one_line(job.error_type, job.error_message),
            )
        )
    elif not failing and job.status == JobStatus.CANCELLED:
        errors.append(
            TaskError(
                exception_class_path=_KNOWN_EXCEPTIONS["JobCancelled"],
                traceback=_one_line("JobCancelled", "Cancelled before it ran."),
            )
        )
    return errors


def _one_line(error_type: str, message: str) -> str:
    return f"{error_type}: {message}\n" if message else f"{error_type}\n"


def _exception_path(name: str, traceback: str) -> str:
    """The dotted path of an exception the ledger recorded by class name.

    Python prints a traceback's exception line as ``module.Qualname: message``
    (no module for builtins), so the latest traceback names the module.
    """
    if not name:
        return "builtins.Exception"
    matches = re.findall(
        rf"^((?:[A-Za-z_]\w*\.)*){re.escape(name)}(?::|$)", traceback or "", flags=re.MULTILINE
    )
    if matches and matches[-1]:
        return f"{matches[-1]}{name}"
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    return _KNOWN_EXCEPTIONS.get(name, name)


def _task_job(result_id: str) -> Job:
    try:
        pk = uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None
    jobs = Job.objects.filter(pk=pk, job_type=TASK_JOB_TYPE)
    organization_id = get_organization_id()
    if organization_id is not None:
        jobs = jobs.filter(organization_id=organization_id)
    job = jobs.first()
    if job is None:
        raise TaskResultDoesNotExist(result_id)
    return job


# --- helpers -------------------------------------------------------------------


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
        return normalize_json(value)
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


def _send(signal: Signal, sender: type[BaseTaskBackend], result: TaskResult[..., Any]) -> None:
    # A faulty receiver must not change a task's outcome nor break a commit;
    # send_robust logs its exception on the ``django.dispatch`` logger.
    signal.send_robust(sender=sender, task_result=result)
