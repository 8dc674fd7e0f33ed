"""What a running job can see of itself: its id, attempt, progress and cancellation.

The ledger middleware sets a :class:`JobContext` for the length of one
attempt. Job functions reach it with :func:`current_job`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from jobs.conf import jobs_settings
from jobs.errors import JobCancelled, ResultNotSerializable, ResultTooLarge
from jobs.registry import JobType
from jobs.services.control import job_cancel_requested, job_report_progress
from jobs.transport.events import publish, publish_changed


@dataclass
class JobContext:
    """The job a worker thread is running.

    Parameters:
      job_id: the ledger row's id, equal to the Dramatiq message id.
      attempt: 1 for the first delivery, counting redeliveries after crashes.
      retries: how many retries Dramatiq has made so far (0 on the first try).
    """

    job_id: str
    job_type: str
    organization_id: int | None
    attempt: int
    retries: int
    cancelled: bool = False
    result_json: str | None = None
    #: Look for a cancel request before the job's code starts (it waited in its
    #: worker after its claim long enough for one to arrive).
    checkpoint_first: bool = False

    def progress(self, percent: int, message: str = "") -> None:
        """Record progress (0-100). Raises JobCancelled if a cancel was requested."""
        cancel_requested = job_report_progress(
            job_id=self.job_id, attempt=self.attempt, percent=percent, message=message
        )
        # The streams following the job read the new progress now, not at their next poll.
        publish_changed(self.job_id)
        if cancel_requested:
            raise JobCancelled(f"Job {self.job_id} was cancelled while running.")

    def publish_partial(self, text: str, **extra: Any) -> None:
        """Stream a piece of partial output (e.g. generated text) to the job's event stream."""
        publish(self.job_id, "partial", {"text": text, **extra})

    def checkpoint(self) -> None:
        """Raise JobCancelled if a cancel was requested; cheap enough to call in loops."""
        if job_cancel_requested(job_id=self.job_id):
            raise JobCancelled(f"Job {self.job_id} was cancelled while running.")


_current: ContextVar[JobContext | None] = ContextVar("current_job", default=None)


def current_job() -> JobContext | None:
    """The job this thread is running, or None outside a worker."""
    return _current.get()


def set_current_job(ctx: JobContext | None) -> Token[JobContext | None]:
    return _current.set(ctx)


def reset_current_job(token: Token[JobContext | None]) -> None:
    _current.reset(token)


def encode_result(value: Any) -> str | None:
    """JSON-encode a job's return value, refusing what the ledger cannot store whole."""
    if value is None:
        return None
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializable(
            f"The job returned a {type(value).__name__} that JSON cannot encode ({exc}). "
            "Return dicts, lists, strings, numbers, booleans or None."
        ) from None
    limit = jobs_settings.max_result_bytes
    size = len(encoded.encode())
    if size > limit:
        raise ResultTooLarge(
            f"The job's result is {size} bytes, over JOBS_MAX_RESULT_BYTES={limit}. "
            "Store large output elsewhere (a model or a file) and return a reference to it."
        )
    return encoded


def make_actor_fn(jt: JobType) -> Callable[..., None]:
    """The function Dramatiq calls: run the job, then hand its encoded result to the ledger.

    It returns None so Dramatiq does not warn about a result backend; the
    ledger middleware stores the result from the job context instead.
    """
    fn = jt.fn

    def run(**payload: Any) -> None:
        ctx = _current.get()
        try:
            if ctx is not None and ctx.checkpoint_first:
                ctx.checkpoint()
            result = fn(**payload)
        except JobCancelled:
            if ctx is None:
                raise
            ctx.cancelled = True
            return None
        encoded = encode_result(result)
        if ctx is not None:
            ctx.result_json = encoded

    run.__name__ = getattr(fn, "__name__", jt.name)
    run.__qualname__ = getattr(fn, "__qualname__", jt.name)
    run.__module__ = fn.__module__
    run.__doc__ = fn.__doc__
    return run
