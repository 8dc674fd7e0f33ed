"""The recovery loop: no job is lost when workers, processes or Redis fail.

:func:`run_once` is one pass. ``manage.py recover`` runs it every
``JOBS_RECOVERY_INTERVAL_MS``; the scheduler's leader may call it too. It is
idempotent, bounded (at most ``JOBS_RECOVERY_BATCH_SIZE`` rows or workers per
step) and safe to call from several processes at once: a short Redis lock
lets one pass run at a time, and every write is conditional anyway.

A pass, in order:

1. **Redis state.** ``<ns>:__recovery__`` marks a Redis that still has our
   data. If it is missing (first run, or Redis restarted without persistence,
   was flushed or failed over), the messages of waiting jobs are gone: every
   waiting row sent before that moment is re-sent (step 4), and heartbeats
   are not trusted for one heartbeat timeout, so live workers can reconnect.
   The same hold-off applies when no pass ran for a heartbeat timeout.
2. **Dead workers.** A worker process is dead when both its Dramatiq
   heartbeat (``<ns>:__heartbeats__``) and its registry entry
   (``<ns>:__workers__``) are older than ``JOBS_HEARTBEAT_TIMEOUT_MS``, or
   when the ledger has attempts open on a worker Redis does not know. Its
   open attempts become ``lost`` and their jobs ``retrying``; then every
   message it held, in every queue, band and delay queue, goes back to its
   queue. A lost job whose message was not found is re-sent from the ledger.
3. **Outbox relay.** A ``queued`` row that never reached Redis (a crash
   between commit and send, or Redis failing at that moment) is sent once it
   is ``JOBS_OUTBOX_GRACE_MS`` old. A ``retrying`` row whose retry should have
   run long ago (its retry message was lost) is sent again.
4. **Reconcile** after a data loss (step 1), in batches over several passes.
5. **Fairness slots** of finished jobs are freed. A job frees its running-job
   slot when it ends; a release lost to a Redis failover or cut would hold
   the slot until its lease expires (the job's time limit and a minute),
   stalling an organization at its cap.
6. **Dead letters** older than ``JOBS_DEAD_MESSAGE_TTL_MS`` leave Redis
   (Dramatiq's random maintenance did that; the ledger keeps them for good).

Steps 1 and 4 are :mod:`jobs.services.recovery_redis_loss`.
Redis is reached through :mod:`jobs.transport.recovery` (lock, marker,
heartbeats), :mod:`jobs.transport.queues` (dead letters) and the broker's
``requeue_worker``: only keys ``<ns>:*``, never ``KEYS`` or ``SCAN``. The
scripts reach keys they compute from the namespace, like Dramatiq's own, so
this needs a single Redis (not Cluster). ACL: ``+@read +@write +@scripting
+ping ~<ns>:*``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from django.utils import timezone

from jobs.conf import jobs_settings
from jobs.errors import UnknownJobType
from jobs.models import Job, JobStatus
from jobs.registry import all_job_types, get_job_type
from jobs.selectors.recovery import (
    job_outbox_waiting_jobs,
    job_outboxes_due,
    jobs_finished_among,
    jobs_stranded_retrying,
    jobs_unsent,
    open_attempt_workers,
    open_attempt_workers_of,
    organizations_with_waiting_jobs,
)
from jobs.services.dispatch import jobs_send
from jobs.services.outbox import job_outbox_delete
from jobs.services.recovery_ledger import (
    WORKER_LOST,
    job_attempts_mark_lost,
    job_dead_letter,
    relay_messages,
)
from jobs.services.recovery_redis_loss import redis_loss_reconcile, redis_loss_state
from jobs.transport import recovery as redis_state
from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.limits import concurrency_holders, concurrency_release_many
from jobs.transport.queues import dead_messages_expire
from jobs.transport.workers import worker_entry_remove

logger = logging.getLogger(__name__)

#: Set when a pass in this process failed on Redis; the next pass holds off judging heartbeats.
_redis_failed = False


@dataclass
class WorkerRecovery:
    """What recovering one worker process did.

    Parameters:
      broker_id: the worker's Dramatiq broker id.
      lost: jobs whose open attempt was closed as lost; each runs again.
      cancelled: jobs whose pending cancel was applied instead.
      requeued: messages moved from the worker's acks sets back to their queues.
      resent: lost jobs whose message was gone from Redis, sent again from the ledger.
    """

    broker_id: str
    lost: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    requeued: int = 0
    resent: list[str] = field(default_factory=list)


@dataclass
class RecoveryReport:
    """What one pass did. ``skipped`` means another process held the pass lock."""

    skipped: bool = False
    redis_data_lost: bool = False
    heartbeats_trusted: bool = True
    dead_workers: list[WorkerRecovery] = field(default_factory=list)
    relayed: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    undeliverable: list[str] = field(default_factory=list)
    expired_dead_letters: int = 0
    freed_slots: int = 0

    @property
    def did_something(self) -> bool:
        return bool(
            self.redis_data_lost
            or self.dead_workers
            or self.relayed
            or self.reconciled
            or self.undeliverable
            or self.expired_dead_letters
        )

    def summary(self) -> str:
        lost = sum(len(w.lost) for w in self.dead_workers)
        requeued = sum(w.requeued for w in self.dead_workers)
        resent = sum(len(w.resent) for w in self.dead_workers)
        return (
            f"dead workers {len(self.dead_workers)}, lost attempts {lost}, "
            f"requeued {requeued}, re-sent {resent}, relayed {len(self.relayed)}, "
            f"reconciled {len(self.reconciled)}, undeliverable {len(self.undeliverable)}, "
            f"expired dead letters {self.expired_dead_letters}, "
            f"freed fairness slots {self.freed_slots}"
            + (", Redis data loss detected" if self.redis_data_lost else "")
        )


def run_once(broker: JobsRedisBroker | None = None) -> RecoveryReport:
    """Run one recovery pass (see the module docstring). Raises Redis and database errors."""
    global _redis_failed
    broker = broker or get_broker()
    lock_ms = max(30_000, 6 * jobs_settings.recovery_interval_ms)
    try:
        token = redis_state.pass_lock_acquire(broker, ttl_ms=lock_ms)
    except redis.RedisError:
        _redis_failed = True
        raise
    if token is None:
        return RecoveryReport(skipped=True)
    try:
        report = RecoveryReport()
        now_ms = _now_ms()
        report.heartbeats_trusted, report.redis_data_lost, reconcile = redis_loss_state(
            broker, now_ms, redis_was_down=_redis_failed
        )
        _redis_failed = False
        if report.heartbeats_trusted:
            _recover_dead_workers(broker, now_ms, report)
        _relay(broker, report)
        if reconcile is not None:
            report.reconciled += redis_loss_reconcile(
                broker, *reconcile, send=lambda rows: _send(rows, report=report)
            )
        report.freed_slots = _free_finished_slots()
        report.expired_dead_letters = dead_messages_expire(
            broker,
            sorted(broker.get_declared_queues()),
            before_ms=now_ms - jobs_settings.dead_message_ttl_ms,
            limit=jobs_settings.recovery_batch_size,
        )
        redis_state.state_write(broker, {"last_pass_ms": _now_ms()})
        if report.did_something:
            logger.info("Recovery pass finished: %s.", report.summary())
        return report
    except redis.RedisError:
        _redis_failed = True
        raise
    finally:
        with contextlib.suppress(redis.RedisError):
            redis_state.pass_lock_release(broker, token)


def recover_worker(
    broker: JobsRedisBroker,
    broker_id: str,
    *,
    error_type: str = WORKER_LOST,
    error_message: str = "The worker process died while running this job; it runs again.",
) -> WorkerRecovery:
    """Close a worker's open attempts as lost and hand every message it held back.

    Used for dead workers by :func:`run_once` and for a stopping worker's
    unfinished jobs by the ``InterruptedJobs`` middleware.
    """
    outcome = WorkerRecovery(broker_id=broker_id)
    # The ledger first: a message put back finds its job ``retrying``, claimable.
    lost = job_attempts_mark_lost(
        worker_ids=open_attempt_workers_of(broker_ids=[broker_id]),
        error_type=error_type,
        error_message=error_message,
    )
    outcome.lost, outcome.cancelled = lost.rerun, lost.cancelled
    requeued = broker.requeue_worker(broker_id, broker.all_queue_names(), forget=True)
    outcome.requeued = len(requeued)
    worker_entry_remove(broker, broker_id)
    missing = sorted(set(outcome.lost) - set(requeued))
    if missing:
        outcome.resent = _send(Job.objects.filter(pk__in=missing, status=JobStatus.RETRYING))
    return outcome


def _recover_dead_workers(broker: JobsRedisBroker, now_ms: int, report: RecoveryReport) -> None:
    timeout_ms = jobs_settings.heartbeat_timeout_ms
    batch = jobs_settings.recovery_batch_size
    cutoff_ms = now_ms - timeout_ms
    candidates = redis_state.heartbeats_older_than(broker, cutoff_ms=cutoff_ms, limit=batch)
    started_before = datetime.fromtimestamp(cutoff_ms / 1000, tz=UTC)
    for worker in open_attempt_workers(started_before=started_before, limit=batch):
        broker_id = worker.rsplit(":", 1)[-1]
        if broker_id not in candidates:
            candidates.append(broker_id)
    candidates = [c for c in candidates if c != broker.broker_id]
    if not candidates:
        return
    seen = redis_state.last_seen_ms(broker, candidates)
    for broker_id, last_seen in zip(candidates, seen, strict=True):
        if last_seen is not None and last_seen >= cutoff_ms:
            continue
        outcome = recover_worker(broker, broker_id)
        report.dead_workers.append(outcome)
        logger.warning(
            "Worker %s is dead (no heartbeat for %d ms): %d attempt(s) lost, %d message(s) "
            "requeued, %d re-sent.",
            broker_id,
            timeout_ms,
            len(outcome.lost),
            outcome.requeued,
            len(outcome.resent),
        )


def _relay(broker: JobsRedisBroker, report: RecoveryReport) -> None:
    now = timezone.now()
    batch = jobs_settings.recovery_batch_size
    for outbox in job_outboxes_due(
        created_before=now - timedelta(milliseconds=jobs_settings.outbox_grace_ms), limit=batch
    ):
        waiting = job_outbox_waiting_jobs(outbox=outbox)
        ids, sent = _send_checked(waiting, report=report)
        report.relayed += ids
        if sent:
            job_outbox_delete(outbox_id=outbox.pk)
    unsent = jobs_unsent(
        created_before=now - timedelta(milliseconds=jobs_settings.outbox_grace_ms), limit=batch
    )
    report.relayed += _send(unsent, report=report)
    longest_backoff_ms = max(
        [jobs_settings.default_max_backoff_ms] + [jt.max_backoff_ms or 0 for jt in all_job_types()]
    )
    horizon = timedelta(
        milliseconds=longest_backoff_ms
        + jobs_settings.outbox_grace_ms
        + jobs_settings.heartbeat_timeout_ms
    )
    stranded = jobs_stranded_retrying(enqueued_before=now - horizon, limit=batch)
    report.relayed += _send(stranded, report=report)


def _free_finished_slots() -> int:
    """Free the running-job slots still held by jobs that have finished."""
    organizations = organizations_with_waiting_jobs(limit=jobs_settings.recovery_batch_size)
    stale: list[tuple[int, str]] = []
    for organization_id, holders in concurrency_holders(organizations).items():
        stale += [(organization_id, j) for j in jobs_finished_among(job_ids=holders)]
    concurrency_release_many(stale)
    return len(stale)


def _send(jobs: Iterable[Job], *, report: RecoveryReport | None = None) -> list[str]:
    """Send ledger rows' messages; rows of job types no longer registered are failed."""
    return _send_checked(jobs, report=report)[0]


def _send_checked(
    jobs: Iterable[Job], *, report: RecoveryReport | None = None
) -> tuple[list[str], bool]:
    """:func:`_send`, and whether Redis took the messages."""
    sendable: list[Job] = []
    for job in jobs:
        try:
            get_job_type(job.job_type)
        except UnknownJobType:
            if job_dead_letter(
                job_id=str(job.pk),
                error_type="UnknownJobType",
                error_message=f"No job type {job.job_type!r} is registered; it cannot run.",
            ):
                logger.error("Job %s names unknown job type %r; failed.", job.pk, job.job_type)
                if report is not None:
                    report.undeliverable.append(str(job.pk))
            continue
        sendable.append(job)
    sent = jobs_send(relay_messages(sendable)) if sendable else True
    return [str(job.pk) for job in sendable], sent


def _now_ms() -> int:
    return int(time.time() * 1000)
