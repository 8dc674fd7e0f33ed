"""Counts job outcomes and times attempts for Prometheus, without touching the database."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from jobs.metrics import initialise_series, record_job_finished, record_job_started
from jobs.queues import home_queue_of
from jobs.registry import all_job_types
from jobs.runtime import current_job


class JobMetrics(Middleware):
    """Records ``toolboxai_jobs_wait_seconds`` at start, then the run time and the outcome.

    At worker boot it creates every job type's series at zero.

    It sits just inside the ledger, so it sees only messages the ledger
    claimed, and its ``after_*`` hooks run before the ledger closes the job
    context: the outcome is read from the same facts the ledger records
    (Retries' ``message.failed``, the job's cancellation, the exception).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        initialise_series((jt.name, jt.queue) for jt in all_job_types())

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        now = time.time()
        due_ms = message.options.get("eta") or message.message_timestamp
        record_job_started(
            job_type=message.actor_name,
            wait_seconds=now - float(due_ms) / 1000,
            organization_id=message.options.get("organization_id"),
        )
        self._local.started = time.monotonic()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started: float | None = getattr(self._local, "started", None)
        if started is None:
            return
        self._local.started = None
        record_job_finished(
            job_type=message.actor_name,
            queue=home_queue_of(message.queue_name),
            status=_next_status(message, exception),
            duration_seconds=time.monotonic() - started,
            organization_id=message.options.get("organization_id"),
        )

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # A middleware inside this one (AgeLimit) refused a message the ledger had claimed.
        self.after_process_message(broker, message, exception=None)


def _next_status(message: Any, exception: BaseException | None) -> str:
    ctx = current_job()
    if ctx is not None and ctx.cancelled:
        return "cancelled"
    if exception is None and not message.failed:
        return "succeeded"
    if message.failed:
        return "failed"
    return "retrying"
