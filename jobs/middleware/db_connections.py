"""Keeps each worker thread's database connection healthy without a probe per message."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from django import db
from django_dramatiq.middleware import DbConnectionsMiddleware

#: A connection that served a message this recently is trusted without a ``SELECT 1`` probe.
RECENT_USE_SECONDS = 1.0


class DbConnections(DbConnectionsMiddleware):
    """django-dramatiq's DB-connections middleware, minus a round trip per message.

    Like Django between requests, it closes connections that errored or
    outlived ``CONN_MAX_AGE`` around every message. Django then also probes
    the connection (``SELECT 1``, with ``CONN_HEALTH_CHECKS``) before its
    next query: one Postgres round trip per job. A connection this thread used for a message that
    finished less than ``RECENT_USE_SECONDS`` ago skips the probe; an idle one
    is still probed. Should a trusted connection have died meanwhile, the
    ledger's first query fails, the ledger re-delivers the message later
    (never lost), and Django closes the errored connection after the message.

    Parameters:
      recent_use_seconds: how long after a message a connection is trusted, in seconds.
    """

    def __init__(self, *, recent_use_seconds: float = RECENT_USE_SECONDS) -> None:
        self.recent_use_seconds = recent_use_seconds
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        last_used = getattr(self._local, "last_used", None)
        trusted = last_used is not None and time.monotonic() - last_used < self.recent_use_seconds
        for conn in db.connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()
            if trusted and conn.connection is not None and not conn.errors_occurred:
                conn.health_check_done = True  # type: ignore[attr-defined]

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        db.close_old_connections()
        self._local.last_used = time.monotonic()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)
