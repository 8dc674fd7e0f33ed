"""Keeps one organization from starving the others, and job types within their start rates."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import dramatiq
import redis
from django.db import DatabaseError
from dramatiq.middleware import Middleware, SkipMessage

from jobs.background import BackgroundThread
from jobs.conf import jobs_settings
from jobs.errors import UnknownJobType
from jobs.metrics import record_deferral
from jobs.registry import get_job_type
from jobs.services.control import job_cancel_for_inactive_organization
from jobs.services.fairness import organization_limits, organization_limits_cached
from jobs.services.ledger_writer import release_claims_ahead
from jobs.transport.broker import add_fetch_listener, remove_fetch_listener
from jobs.transport.limits import (
    concurrency_acquire,
    concurrency_acquire_many,
    concurrency_release_many,
    type_rate_take,
)

logger = logging.getLogger(__name__)

#: Extra lease time beyond the actor's hard limit before a held slot frees itself.
LEASE_MARGIN_MS = 60_000


class Fairness(Middleware):
    """Defers a message whose organization is at its concurrency cap, or whose job type is
    over its start rate; cancels the jobs of inactive organizations.

    A deferred message is sent again with a short delay and the original is
    acknowledged: it uses no retry, is never marked failed, and its ledger row
    stays waiting (this middleware runs outside the ledger; a claim taken at
    fetch is given back before the copy is sent). Over-cap jobs
    wait ``JOBS_FAIRNESS_DEFER_MS`` (with jitter); rate-limited ones wait until
    their next token.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self.releaser = SlotReleaser()
        self._broker: dramatiq.Broker | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._broker = broker
        add_fetch_listener(broker, self)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        remove_fetch_listener(broker, self)
        self.releaser.close()

    def take_ahead(self, messages: list[Any]) -> None:
        """Take the running-job slots of messages a consumer just fetched, in one round trip.

        A fetch listener, like the ledger's claim: the slot is held while the
        message waits for a job thread. A message refused a slot is not
        claimed; its job thread defers it. Messages of organizations whose
        limits are not cached yet, or with an error here, are left to the job
        thread (which may query the database; consumer threads do not), and so
        are all of them while Redis fails.
        """
        wanted: list[tuple[Any, tuple[int, str, int, int]]] = []
        for message in messages:
            organization_id = message.options.get("organization_id")
            if organization_id is None or message.queue_name.endswith(".DQ"):
                continue
            limits = organization_limits_cached(organization_id=organization_id)
            if limits is None:
                continue
            assert self._broker is not None  # a listener only once its worker booted
            # Fetched messages name actors of this worker (the consumer dead-letters others).
            lease = self._lease_ms(self._broker, message)
            slot = (organization_id, message.message_id, limits.max_concurrent_jobs, lease)
            wanted.append((message, slot))
        if not wanted:
            return
        try:
            taken = concurrency_acquire_many([slot for _, slot in wanted])
        except redis.RedisError:
            return  # the job threads try again, one by one
        for (message, slot), ok in zip(wanted, taken, strict=True):
            if ok:
                message.jobs_slot = (slot[0], slot[1])
            else:
                message.jobs_slot_refused = True

    def give_back(self, messages: list[Any]) -> None:
        for message in messages:
            self._release_ahead(message)

    def _release_ahead(self, message: Any) -> None:
        slot = getattr(message, "jobs_slot", None)
        if slot is not None:
            message.jobs_slot = None
            self.releaser.release(slot)

    @staticmethod
    def _lease_ms(broker: dramatiq.Broker, message: Any) -> int:
        actor = broker.get_actor(message.actor_name)
        return int(actor.options.get("time_limit", jobs_settings.default_time_limit_ms)) + (
            LEASE_MARGIN_MS
        )

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._local.slot = None
        slot_ahead = getattr(message, "jobs_slot", None)
        if slot_ahead is not None:
            message.jobs_slot = None  # taken over: released after the job, as any slot
            self._local.slot = slot_ahead
        elif getattr(message, "jobs_slot_refused", False):
            message.jobs_slot_refused = False
            delay = jobs_settings.fairness_defer_ms
            self._defer(broker, message, int(delay * random.uniform(0.75, 1.25)), "org_concurrency")
        organization_id = message.options.get("organization_id")
        if organization_id is not None and slot_ahead is None:
            try:
                limits = organization_limits(organization_id=organization_id)
            except DatabaseError:
                limits = None  # the ledger middleware defers when the database is down
            if limits is not None and not limits.is_active:
                release_claims_ahead([message])  # the row must be waiting to be cancelled
                job_cancel_for_inactive_organization(job_id=message.message_id)
                logger.info("Job %s cancelled: its organization is inactive.", message.message_id)
                raise SkipMessage("organization inactive")
            if limits is not None:
                if not concurrency_acquire(
                    organization_id=organization_id,
                    job_id=message.message_id,
                    limit=limits.max_concurrent_jobs,
                    lease_ms=self._lease_ms(broker, message),
                ):
                    delay = jobs_settings.fairness_defer_ms
                    self._defer(
                        broker, message, int(delay * random.uniform(0.75, 1.25)), "org_concurrency"
                    )
                self._local.slot = (organization_id, message.message_id)

        per_minute = self._type_rate(message.actor_name)
        if per_minute:
            wait_ms = type_rate_take(job_type=message.actor_name, per_minute=per_minute)
            if wait_ms:
                self._release()
                self._defer(broker, message, wait_ms, "type_rate_limit")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._release_ahead(message)  # a middleware before this one raised
        self._release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release_ahead(message)  # skipped before this middleware took its slot over
        self._release()

    def _release(self) -> None:
        slot = getattr(self._local, "slot", None)
        if slot is not None:
            self._local.slot = None
            self.releaser.release(slot)

    @staticmethod
    def _type_rate(actor_name: str) -> int | None:
        try:
            return get_job_type(actor_name).effective_rate_limit_per_minute()
        except UnknownJobType:  # a raw actor without a registered type has no limit
            return None

    @staticmethod
    def _defer(broker: dramatiq.Broker, message: Any, delay_ms: int, reason: str) -> None:
        # Waiting again before the copy can reach a worker, which would find it running.
        release_claims_ahead([message])
        broker.enqueue(message.copy(), delay=max(1, delay_ms))
        record_deferral(
            reason,
            job_type=message.actor_name,
            organization_id=message.options.get("organization_id"),
        )
        logger.debug("Job %s deferred %d ms (%s).", message.message_id, delay_ms, reason)
        raise SkipMessage(f"deferred: {reason}")


class SlotReleaser(BackgroundThread):
    """Frees running-job slots from one thread per process, many per round trip.

    A finished job's worker thread hands its slot over and moves on to the
    next message instead of waiting for Redis; the releaser frees whatever has
    piled up, at once. A slot it cannot free (Redis down for longer than its
    tries) frees itself when its lease expires.
    """

    #: Pauses between tries while Redis is unreachable.
    RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 4.0)

    def __init__(self) -> None:
        super().__init__("fairness-releaser")
        self._slots: list[tuple[int, str]] = []

    def release(self, slot: tuple[int, str]) -> None:
        with self._cond:
            self._ensure_started()
            self._slots.append(slot)
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Free what is pending, then stop the thread (it starts again if used again)."""
        self._stop(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                slots = self._next_batch(self._slots)
            if not slots:
                return
            self._free(slots)

    def _free(self, slots: list[tuple[int, str]]) -> None:
        for delay in (*self.RETRY_DELAYS, None):
            try:
                concurrency_release_many(slots)
                return
            except redis.RedisError as exc:
                if delay is None:
                    logger.warning(
                        "Could not free %d running-job slot(s) (%s); they free themselves "
                        "when their leases expire.",
                        len(slots),
                        exc,
                    )
                    return
                time.sleep(delay)
