"""Runs the worker's queue wake-up listener (``jobs.transport.wakeups``) while the worker runs."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware


class QueueWakeupListener(Middleware):
    """Starts the broker's wake-up listener at worker boot and stops it at shutdown.

    Only workers listen; a process that merely enqueues publishes. Stopping
    first at shutdown sends the consumers back to short polls, so they notice
    their own stop within the worker timeout instead of the wake-up poll.
    """

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        wakeups = getattr(broker, "wakeups", None)
        if wakeups is not None and getattr(broker, "publishes_wakeups", False):
            wakeups.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        wakeups = getattr(broker, "wakeups", None)
        if wakeups is not None:
            wakeups.stop()
