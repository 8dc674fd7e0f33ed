"""Stops a worker process past its job or memory limit, so a fresh process replaces it."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from jobs.metrics import record_recycle
from jobs.services.ledger_writer import release_claims_ahead

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class WorkerRecycling(Middleware):
    """Retires this worker process after ``max_jobs`` jobs, or once its memory is over ``max_rss_mb``.

    Dramatiq has no ``max_tasks_per_child``. Past a limit the process stops
    itself as SIGTERM would stop it: no job thread takes another message, the
    jobs running finish (within JOBS_WORKER_SHUTDOWN_TIMEOUT_MS), what the
    consumers fetched goes back to its queue, and the process exits with code
    0. ``rundramatiq``'s supervisor (:mod:`jobs.management.supervisor`) then
    starts a fresh process in its place. The exit is graceful, so the recovery
    loop plays no part.

    The job limit is exact: a job thread that took a message after the last
    allowed one started hands it back (its claim given back, the message
    re-sent to its queue) instead of running it. Memory is checked after each
    job, so the job that crossed the limit completes first.

    It acts only in a worker process run by ``rundramatiq`` (an in-process
    ``dramatiq.Worker`` in a test has no process to replace).

    Parameters:
      max_jobs: jobs one process starts before it is replaced (0: no limit).
      max_rss_mb: resident memory, in MiB, over which the process is replaced after
        a job (0: no limit).
    """

    def __init__(self, *, max_jobs: int = 0, max_rss_mb: int = 0) -> None:
        self.max_jobs = max_jobs
        self.max_rss_mb = max_rss_mb
        self._lock = threading.Lock()
        self._started = 0
        self._retiring = False
        self._worker: dramatiq.Worker | None = None
        self._sigterms = 0

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the boot: its consumers and job threads start before after_worker_boot,
        # and a job they run meanwhile must count.
        if not (self.max_jobs or self.max_rss_mb):
            return
        if threading.current_thread() is not threading.main_thread():
            logger.info("Worker recycling is off: this worker does not run in its own process.")
            self.max_jobs = self.max_rss_mb = 0
            return
        self._worker = worker
        original = signal.getsignal(signal.SIGTERM)
        if callable(original):
            signal.signal(signal.SIGTERM, self._sigterm_handler(original))

    def _sigterm_handler(self, original: Any) -> Any:
        # Dramatiq's handler stops gracefully on the first SIGTERM and kills the
        # process on the second. Retiring sends the first; a supervisor's SIGTERM
        # arriving meanwhile must not turn that graceful stop into a kill.
        def handler(signum: int, frame: FrameType | None) -> Any:
            self._sigterms += 1
            if self._retiring and self._sigterms == 2:
                logger.info("Already stopping to be replaced; finishing the jobs in flight.")
                return None
            return original(signum, frame)

        return handler

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._worker is None:
            return
        with self._lock:
            if self._retiring:
                hand_back = True
            else:
                hand_back = False
                self._started += 1
                if self.max_jobs and self._started >= self.max_jobs:
                    self._retire("max_jobs")
                    logger.warning(
                        "Worker process %d is retiring to be replaced by a fresh one: it started "
                        "%d jobs (JOBS_WORKER_MAX_JOBS=%d).",
                        os.getpid(),
                        self._started,
                        self.max_jobs,
                    )
        if hand_back:
            # Taken by a job thread after the last allowed job: back to its queue, unrun.
            release_claims_ahead([message])
            broker.enqueue(message.copy())
            raise SkipMessage("worker process retiring")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self._worker is None or not self.max_rss_mb or self._retiring:
            return
        rss_mb = resident_memory_bytes() / _MIB
        if rss_mb > self.max_rss_mb:
            with self._lock:
                if not self._retiring:
                    self._retire("max_rss")
                    logger.warning(
                        "Worker process %d is retiring to be replaced by a fresh one: its resident "
                        "memory is %.0f MiB (JOBS_WORKER_MAX_RSS_MB=%d).",
                        os.getpid(),
                        rss_mb,
                        self.max_rss_mb,
                    )

    def _retire(self, reason: str) -> None:
        """Stop taking messages and ask Dramatiq to stop this process gracefully."""
        assert self._worker is not None
        self._retiring = True
        for thread in self._worker.workers:
            thread.stop()  # each finishes the job it runs, then takes no other message
        record_recycle(reason)
        # The consumers keep fetching (and so heartbeating) until Dramatiq's
        # graceful stop, which hands back whatever they fetched meanwhile.
        os.kill(os.getpid(), signal.SIGTERM)


def resident_memory_bytes() -> int:
    """This process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
