"""Dramatiq's Retries, which notes a retry it could not send instead of losing it silently."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import redis
from dramatiq.errors import BrokerConnectionError

logger = logging.getLogger(__name__)

#: Raised by a send that Redis did not take (unreachable, read-only after a failover, full).
SEND_ERRORS = (BrokerConnectionError, redis.RedisError)


class Retries(dramatiq.middleware.Retries):
    """Dramatiq's Retries. A retry whose send fails marks its message ``jobs_retry_unsent``.

    Dramatiq sends the retry from this hook; when Redis does not take it
    (unreachable, read-only during a failover, out of memory) the send raises,
    Dramatiq logs it and the retry is gone, while the ledger still records the
    job as ``retrying``. The ledger middleware, whose hook runs next, records
    such a job as not sent (``enqueued_at`` empty), and the recovery loop sends
    it as soon as Redis takes it, without the rest of its back-off, instead of
    waiting out the longest back-off. A send whose reply was lost after Redis
    stored it is then sent twice: the ledger skips the copy that finds its job
    running or finished, and one that finds it waiting again runs as one more
    attempt.
    """

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except SEND_ERRORS as exc:
            if message.failed:  # not a retry (an exhausted job's on_retry_exhausted send)
                raise
            message.jobs_retry_unsent = True
            logger.warning(
                "Could not send the retry of job %s (%s); the recovery loop sends it once "
                "Redis takes it.",
                message.message_id,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
