"""The options of a job request (priority, idempotency key, delay, retries, queue), checked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.errors import InvalidSubmission
from jobs.payload_limits import text_problem
from jobs.queues import CONSUMED_QUEUES, MAX_PRIORITY, MIN_PRIORITY

MAX_DELAY = timedelta(days=7)
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_RETRIES = 100


def check_options(
    *,
    priority: Any,
    idempotency_key: Any,
    delay: timedelta | None,
    max_retries: Any,
    queue: str | None,
    home_queue: str,
) -> str:
    """Raise :class:`InvalidSubmission` naming the first option out of range; the queue to use.

    ``home_queue`` is the job type's queue, used when the request names none.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidSubmission(
            f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
            f"not {priority!r}.",
            field="priority",
        )
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidSubmission(
            f"priority {priority!r} is out of range; use {MIN_PRIORITY} (least urgent) "
            f"to {MAX_PRIORITY} (most urgent).",
            field="priority",
        )
    key = idempotency_key
    if key is not None and (
        not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH
    ):
        raise InvalidSubmission(
            f"idempotency_key must be a non-empty string of at most "
            f"{MAX_IDEMPOTENCY_KEY_LENGTH} characters, not {key!r}.",
            field="idempotency_key",
        )
    if key is not None and (problem := text_problem(key)) is not None:
        raise InvalidSubmission(f"idempotency_key is refused: {problem}", field="idempotency_key")
    if delay is not None and not timedelta(0) <= delay <= MAX_DELAY:
        raise InvalidSubmission(
            f"delay {delay} is out of range; use 0 seconds to 7 days.", field="delay_seconds"
        )
    if max_retries is not None and (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_RETRIES
    ):
        raise InvalidSubmission(
            f"max_retries must be a whole number from 0 to 100, not {max_retries!r}.",
            field="max_retries",
        )
    if queue is None:
        return home_queue
    if queue not in CONSUMED_QUEUES:
        raise InvalidSubmission(
            f"queue {queue!r} is not a queue workers consume; use one of "
            f"{', '.join(CONSUMED_QUEUES)}.",
            field="queue",
        )
    return queue
