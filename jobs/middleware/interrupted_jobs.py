"""Records the jobs a stopping worker could not finish, and hands their messages back at once."""

from __future__ import annotations

import logging

import dramatiq
from django.db import DatabaseError, connection
from dramatiq.middleware import Middleware
from redis import RedisError

from jobs.services.recovery import recover_worker
from jobs.services.recovery_ledger import WORKER_SHUTDOWN
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
    """

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
