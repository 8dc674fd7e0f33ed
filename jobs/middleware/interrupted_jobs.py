"""Hands back at once the jobs a worker could not finish: its own at shutdown, dead predecessors' at boot."""

from __future__ import annotations

import logging
import threading

import dramatiq
from django.db import DatabaseError, connection
from dramatiq.middleware import Middleware
from redis import RedisError

from jobs.services.recovery import recover_worker
from jobs.services.recovery_ledger import WORKER_SHUTDOWN
from jobs.services.restart_recovery import host_dead_workers_recover_at_start, host_watch_once
from jobs.transport.broker import JobsRedisBroker

logger = logging.getLogger(__name__)


class InterruptedJobs(Middleware):
    """On worker shutdown, runs recovery for this worker process.

    Dramatiq's ``Worker.stop`` waits up to the shutdown timeout for jobs in
    flight, requeues what it had prefetched, and abandons the rest. Those
    abandoned jobs would otherwise wait for the heartbeat timeout. Here their
    attempts are closed as ``lost`` (``WorkerShutdown``: interrupted, not
    counted as poison), their jobs move to ``retrying`` and their messages go
    back to their queues, so another worker runs them again right away.

    On boot, and then every ``watch_interval_ms`` while it runs, it does the
    same for this host's worker processes that died
    (:mod:`jobs.services.restart_recovery`), rather than waiting for their
    heartbeats to expire.

    Parameters:
      watch_interval_ms: how often a live worker checks its host's other workers, in ms.
    """

    def __init__(self, *, watch_interval_ms: int = 1_000) -> None:
        self.watch_interval = watch_interval_ms / 1000
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, JobsRedisBroker):
            return
        host_dead_workers_recover_at_start()
        self._stop.clear()
        threading.Thread(target=self._watch, args=(broker,), name="host-watch", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _watch(self, broker: JobsRedisBroker) -> None:
        while not self._stop.wait(self.watch_interval):
            host_watch_once(broker)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, JobsRedisBroker):
            return
        try:
            outcome = recover_worker(
                broker,
                broker.broker_id,
                error_type=WORKER_SHUTDOWN,
                error_message=(
                    "Interrupted: the worker shut down before the job finished "
                    "(JOBS_WORKER_SHUTDOWN_TIMEOUT_MS); it runs again."
                ),
            )
        except (DatabaseError, RedisError):
            logger.exception(
                "Could not hand back this worker's unfinished jobs; the recovery loop will "
                "once its heartbeat expires."
            )
            return
        finally:
            if not connection.in_atomic_block:
                connection.close()
        if outcome.lost or outcome.requeued:
            logger.warning(
                "Shutdown interrupted %d job(s); %d message(s) handed back to their queues.",
                len(outcome.lost),
                outcome.requeued,
            )
