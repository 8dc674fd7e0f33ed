"""A ``django.tasks`` backend that runs any app's ``@task`` functions on our workers.

``TASKS = {"default": {"BACKEND": "jobs.backends.DramatiqBackend", ...}}``;
see :mod:`jobs.backends.dramatiq` for the options, :mod:`jobs.backends.worker`
for the worker's half and :mod:`jobs.backends.results` for the result store.
"""

from __future__ import annotations

from jobs.backends.dramatiq import DramatiqBackend, job_priority_of
from jobs.backends.results import TASK_JOB_TYPE, load_task, result_from_job
from jobs.backends.worker import task_run

__all__ = [
    "TASK_JOB_TYPE",
    "DramatiqBackend",
    "job_priority_of",
    "load_task",
    "result_from_job",
    "task_run",
]
