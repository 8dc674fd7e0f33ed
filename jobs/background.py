"""The lifecycle shared by a worker process's helper threads (ledger writer, acker, slot releaser)."""

from __future__ import annotations

import threading
from typing import TypeVar

T = TypeVar("T")


class BackgroundThread:
    """One daemon thread running ``_run``, started on first use and stopped by :meth:`_stop`.

    Subclasses guard their queues with ``_cond``, call :meth:`_ensure_started`
    (holding ``_cond``) when they add work, and let ``_run`` return once
    ``_closing`` is set and nothing is left to do. After a stop the thread
    starts again if used again (tests run many workers in one process).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    def _run(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _ensure_started(self) -> None:
        """Start the thread if it is not running. Call with ``_cond`` held."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _next_batch(self, bucket: list[T], limit: int | None = None) -> list[T]:
        """Wait for work in ``bucket`` and take up to ``limit`` of it, oldest first.

        Call with ``_cond`` held. Returns [] once the thread is closing and
        ``bucket`` is empty: ``_run`` then returns.
        """
        while not bucket and not self._closing:
            self._cond.wait()
        taken = bucket[:limit]
        del bucket[:limit]
        return taken

    def _stop(self, timeout: float) -> None:
        """Ask the thread to finish its work and return, and wait up to ``timeout`` seconds."""
        with self._cond:
            thread = self._thread
            self._closing = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._closing = False
            if self._thread is thread:
                self._thread = None
