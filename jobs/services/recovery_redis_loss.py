"""The recovery loop's view of Redis's data: a loss or a server change, and what to re-send.

``<ns>:__recovery__`` (:mod:`jobs.transport.recovery`) marks a Redis that
still holds our data. :func:`redis_loss_state` reads it once per pass: a
missing marker (a restart without persistence, a flush, a failover to an
empty replica) or another server than at the last pass means the messages of
waiting jobs may be gone. :func:`redis_loss_reconcile` then sends them again
from the ledger, in batches over as many passes as it takes (step 1 and 4 of
:mod:`jobs.services.recovery`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from jobs.conf import jobs_settings
from jobs.models import Job
from jobs.registry import all_job_types
from jobs.selectors.recovery import (
    attempts_open_since_before,
    jobs_retrying_sent_before,
    jobs_sent_before,
)
from jobs.transport import recovery as redis_state
from jobs.transport.broker import JobsRedisBroker

# The recovery loop's log lines keep one logger name, whichever module writes them.
logger = logging.getLogger("jobs.services.recovery")


def redis_loss_state(
    broker: JobsRedisBroker, now_ms: int, *, redis_was_down: bool
) -> tuple[bool, bool, tuple[int, bool] | None]:
    """(heartbeats trusted, data loss detected now, what to reconcile or None).

    What to reconcile: (the loss's timestamp, whether every waiting row was scanned since).
    """
    timeout_ms = jobs_settings.heartbeat_timeout_ms
    state = redis_state.state_read(broker)
    data_lost = "epoch_ms" not in state
    if data_lost:
        logger.warning(
            "Redis has no recovery marker (%s): this is the first pass against it, or it "
            "lost its data (restart without persistence, flush, failover). Re-sending every "
            "waiting job sent before now; duplicates are skipped by the ledger.",
            redis_state.state_key(broker),
        )
        state = {
            "epoch_ms": now_ms,
            "reconcile_before_ms": now_ms,
            "hold_until_ms": now_ms + timeout_ms,
        }
        redis_state.state_write(broker, state)
    elif _server_changed(broker):
        # A failover (or restart) to a server that has our marker: writes of the last
        # moments before the switch (a fetch, a deferral's copy) may be missing, so
        # the waiting rows are sent again, as after a data loss.
        logger.warning(
            "Redis is another server than at the last pass (a failover or a restart); "
            "re-sending every waiting job sent before now; duplicates are skipped by the ledger."
        )
        state["reconcile_before_ms"] = now_ms
        state["reconcile_scanned"] = 0
        state["hold_until_ms"] = now_ms + timeout_ms
        redis_state.state_write(
            broker,
            {
                "reconcile_before_ms": now_ms,
                "reconcile_scanned": 0,
                "hold_until_ms": state["hold_until_ms"],
            },
        )
    elif redis_was_down or now_ms - state.get("last_pass_ms", now_ms) > timeout_ms:
        # Redis was unreachable, or no pass ran for a whole timeout: heartbeats may be stale
        # for everyone. Give live workers one timeout to beat again before judging them.
        state["hold_until_ms"] = now_ms + timeout_ms
        redis_state.state_write(broker, {"hold_until_ms": state["hold_until_ms"]})
    trusted = now_ms >= state.get("hold_until_ms", 0)
    before_ms = state.get("reconcile_before_ms")
    reconcile = None if before_ms is None else (before_ms, bool(state.get("reconcile_scanned")))
    return trusted, data_lost, reconcile


def _server_changed(broker: JobsRedisBroker) -> bool:
    previous, current = redis_state.server_swap(broker)
    return previous is not None and current is not None and previous != current


def redis_loss_reconcile(
    broker: JobsRedisBroker,
    before_ms: int,
    scanned: bool,
    *,
    send: Callable[[list[Job]], list[str]],
) -> list[str]:
    """Send again the waiting jobs last sent before a data loss (``before_ms``).

    An attempt running at the loss may still end in a retry sent before it (to
    the Redis that lost it) and recorded after the scan. So once every waiting
    row has been scanned (``scanned``), the passes re-check the ``retrying``
    rows until no such attempt is open, for at most the longest time limit.
    ``send`` sends rows and returns their ids; returns the ids sent.
    """
    batch = jobs_settings.recovery_batch_size
    before = datetime.fromtimestamp(before_ms / 1000, tz=UTC)
    # Read before the rows: a finish commits its attempt and its job row together, so a
    # retry recorded after this check is among the rows read below.
    running = attempts_open_since_before(started_before=before)
    if scanned:
        rows = jobs_retrying_sent_before(before=before, limit=batch)
    else:
        rows = jobs_sent_before(before=before, limit=batch)
    sent = send(rows)
    if len(rows) >= batch:
        return sent
    if running and _now_ms() < before_ms + _longest_attempt_ms():
        if not scanned:
            redis_state.state_write(broker, {"reconcile_scanned": 1})
        return sent
    redis_state.state_forget(broker, "reconcile_before_ms", "reconcile_scanned")
    logger.info("Reconciled the ledger with Redis after the data loss.")
    return sent


def _longest_attempt_ms() -> int:
    """How long an attempt can run before its time limit or the recovery loop ends it."""
    limits = [jobs_settings.default_time_limit_ms] + [
        jt.time_limit_ms or 0 for jt in all_job_types()
    ]
    return max(limits) + jobs_settings.heartbeat_timeout_ms


def _now_ms() -> int:
    return int(time.time() * 1000)
