"""Raises SoftTimeLimitExceeded inside a job that runs past its soft limit."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from dramatiq.middleware.threading import raise_thread_exception

from jobs.errors import SoftTimeLimitExceeded

logger = logging.getLogger(__name__)


class SoftTimeLimit(Middleware):
    """The job's soft time limit, below Dramatiq's hard TimeLimit.

    At the soft limit the job gets a catchable SoftTimeLimitExceeded so it can
    clean up; if it is still running at the hard limit, Dramatiq's TimeLimit
    interrupts it.

    Parameters:
      soft_time_limit: default limit in milliseconds; actors override it with
        the ``soft_time_limit`` option.
      interval: how often deadlines are checked, in milliseconds.
    """

    def __init__(self, *, soft_time_limit: int, interval: int = 100) -> None:
        self.soft_time_limit = soft_time_limit
        self.interval = interval / 1000
        self._deadlines: dict[int, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"soft_time_limit"}

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self._ensure_thread()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = broker.get_actor(message.actor_name)
        limit = message.options.get("soft_time_limit") or actor.options.get(
            "soft_time_limit", self.soft_time_limit
        )
        self._ensure_thread()
        with self._lock:
            self._deadlines[threading.get_ident()] = time.monotonic() + limit / 1000

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._watch, name="soft-time-limit", daemon=True
                )
                self._thread.start()

    def _watch(self) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                expired = [tid for tid, deadline in self._deadlines.items() if now >= deadline]
                for tid in expired:
                    del self._deadlines[tid]
            for tid in expired:
                logger.warning("Soft time limit exceeded; interrupting worker thread %s.", tid)
                raise_thread_exception(tid, SoftTimeLimitExceeded)
            time.sleep(self.interval)
