"""The ledger as a ``django.tasks`` result store: a job row read back as a TaskResult."""

from __future__ import annotations

import builtins
import re
import uuid
from dataclasses import replace
from typing import Any

from django.dispatch import Signal
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task, TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.selectors.jobs import job_attempts, task_job_row

#: The internal job type every task runs as (registered in ``jobs/actors/django_tasks.py``).
TASK_JOB_TYPE = "django_tasks.run"

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
    attempts = job_attempts(job_id=job.pk)
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


def task_job(result_id: str, *, organization_id: int | None) -> Job:
    """The ledger row of a task result (only that organization's, given one).

    Raises:
      TaskResultDoesNotExist: no task of that id (in that organization).
    """
    try:
        pk = uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None
    job = task_job_row(job_id=pk, job_type=TASK_JOB_TYPE, organization_id=organization_id)
    if job is None:
        raise TaskResultDoesNotExist(result_id)
    return job


def send_task_signal(
    signal: Signal, sender: type[BaseTaskBackend], result: TaskResult[..., Any]
) -> None:
    # A faulty receiver must not change a task's outcome nor break a commit;
    # send_robust logs its exception on the ``django.dispatch`` logger.
    signal.send_robust(sender=sender, task_result=result)
