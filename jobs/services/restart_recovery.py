"""Same-host restart recovery: a worker starting on a host takes back its dead predecessors' jobs at once.

The recovery loop (:mod:`jobs.services.recovery`) judges a worker dead when
its heartbeat is ``JOBS_HEARTBEAT_TIMEOUT_MS`` old, because from another host
that is all it can see. A worker starting on the same host can see more: the
process table. Each worker records its host (``JOBS_WORKER_HOST``), pid and
the pid's start time (:mod:`jobs.processes`); a worker process recorded on this
host whose pid is gone, or now belongs to a later process, or that ran before
a reboot, is certainly dead. Its jobs are recovered at once through
:func:`jobs.services.recovery.recover_worker`, the recovery loop's own path:
open attempts become ``lost``, jobs ``retrying``, held messages go back to
their queues. A process that may still run is left to the heartbeat timeout,
so a job never runs twice while its first worker lives.

Two sources name the predecessors: the worker registry in Redis (with start
times), and open attempts in the ledger on this host whose worker is no
longer registered (Redis lost the entry); for those only a missing pid counts.

``manage.py rundramatiq`` calls :func:`host_dead_workers_recover` before it
starts its workers, every worker process calls it once booted (which covers
a single process restarted by Dramatiq), and live workers repeat its registry
check every second (:func:`host_watch_once`), so a process that dies beside
a live one on its host is recovered within about a second, restart or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connection
from redis import RedisError

from jobs.conf import jobs_settings
from jobs.processes import ProcessIdentity, process_gone
from jobs.selectors.recovery import open_attempt_workers_on_host
from jobs.services.recovery import WorkerRecovery, recover_worker
from jobs.transport import recovery as redis_state
from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.workers import worker_entries

logger = logging.getLogger(__name__)

#: How long one process holds the recovery of a dead worker before another may retry it.
_CLAIM_MS = 30_000


@dataclass
class HostRecovery:
    """What recovering this host's dead workers did.

    Parameters:
      host: this host's name (``JOBS_WORKER_HOST``).
      workers: one entry per dead worker process recovered.
    """

    host: str
    workers: list[WorkerRecovery] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return sum(len(w.lost) + len(w.cancelled) for w in self.workers)

    @property
    def messages(self) -> int:
        return sum(w.requeued for w in self.workers)


def host_dead_workers_recover(
    broker: JobsRedisBroker | None = None, *, ledger: bool = True
) -> HostRecovery:
    """Recover the jobs of this host's worker processes that are certainly gone.

    ``ledger=False`` reads only the worker registry (the cheap check live workers
    repeat). Raises Redis and database errors; callers that must go on catch them
    (the recovery loop recovers those workers after the heartbeat timeout).
    """
    broker = broker or get_broker()
    host = jobs_settings.worker_host
    report = HostRecovery(host=host)
    dead = _dead_broker_ids(broker, host, ledger=ledger)
    for broker_id in dead:
        # Every live worker of the host may notice the same death: one recovers it.
        if not redis_state.worker_claim(broker, broker_id, ttl_ms=_CLAIM_MS):
            continue
        outcome = recover_worker(
            broker,
            broker_id,
            error_message=(
                "The worker process died while running this job (found by a worker starting "
                "on the same host); it runs again."
            ),
        )
        report.workers.append(outcome)
    if report.workers:
        logger.warning(
            "Recovered %d job(s) of %d dead worker process(es) on host %s at once: "
            "%d message(s) requeued.",
            report.jobs,
            len(report.workers),
            host,
            report.messages,
        )
    return report


def _dead_broker_ids(broker: JobsRedisBroker, host: str, *, ledger: bool) -> list[str]:
    entries = worker_entries(broker)
    registered = {str(e.get("broker_id")) for e in entries}
    dead = [
        str(entry["broker_id"])
        for entry in entries
        if entry.get("host") == host
        and entry.get("broker_id") not in (None, broker.broker_id)
        and _entry_gone(entry)
    ]
    for worker in open_attempt_workers_on_host(host=host, limit=jobs_settings.recovery_batch_size):
        _host, pid, broker_id = worker.rsplit(":", 2)
        if broker_id in registered or broker_id == broker.broker_id or broker_id in dead:
            continue
        if pid.isdigit() and process_gone(
            ProcessIdentity(pid=int(pid), started=None, boot_id=None)
        ):
            dead.append(broker_id)
    return dead


def _entry_gone(entry: dict[str, Any]) -> bool:
    pid, started, boot = entry.get("pid"), entry.get("pid_started"), entry.get("boot_id")
    if not isinstance(pid, int):
        return False
    return process_gone(
        ProcessIdentity(
            pid=pid,
            started=started if isinstance(started, int) else None,
            boot_id=boot if isinstance(boot, str) else None,
        )
    )


def host_watch_once(broker: JobsRedisBroker) -> None:
    """One check of a live worker for dead siblings on its host; failures are left for the next."""
    try:
        host_dead_workers_recover(broker, ledger=False)
    except (DatabaseError, RedisError) as exc:
        logger.debug("Same-host worker check failed: %s", exc)
    finally:
        if not connection.in_atomic_block:
            connection.close()


def host_dead_workers_recover_at_start() -> HostRecovery | None:
    """:func:`host_dead_workers_recover` for a starting process: failures are logged, not raised.

    A worker must start even while Redis or Postgres is down; the recovery loop
    then finds those workers after the heartbeat timeout.
    """
    try:
        return host_dead_workers_recover()
    except (DatabaseError, RedisError) as exc:
        logger.warning(
            "Could not recover this host's dead workers at start-up (%s: %s); the recovery "
            "loop will once their heartbeats expire.",
            type(exc).__name__,
            exc,
        )
        return None
    finally:
        if not connection.in_atomic_block:
            connection.close()
