"""Web requests reuse a recently used database connection without a ``SELECT 1`` probe.

With ``CONN_HEALTH_CHECKS``, Django probes a persistent connection before the
first query of every request: one extra Postgres round trip per API call,
a large share of a submission's wall time under load (bench/HISTORY.md). Like the workers'
:class:`jobs.middleware.db_connections.DbConnections`, a connection this
thread finished a request with less than ``RECENT_USE_SECONDS`` ago is
trusted; an idle one is still probed. Should a trusted connection have died
meanwhile, that request's first query fails (the API answers 503 with
``Retry-After``, nothing is created) and Django closes the errored connection
when the request ends, so the next request reconnects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django import db
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponseBase

from jobs.outages import POSTGRES

#: A connection that finished a request this recently is trusted without a probe, in seconds.
RECENT_USE_SECONDS = 1.0

_local = threading.local()


def trust_recent_connections(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Middleware: mark this thread's recently used connections as already checked.

    Middleware runs after the ``request_started`` signal, so after Django's
    ``close_old_connections`` has closed broken or old connections and reset
    ``health_check_done``.
    """

    def middleware(request: HttpRequest) -> HttpResponseBase:
        last_used = getattr(_local, "last_used", None)
        if last_used is not None and time.monotonic() - last_used < RECENT_USE_SECONDS:
            for conn in db.connections.all(initialized_only=True):
                if conn.connection is not None and not conn.errors_occurred:
                    conn.health_check_done = True  # type: ignore[attr-defined]
        response = get_response(request)
        if POSTGRES.ongoing and response.status_code < 500:
            _check_postgres_back()
        return response

    return middleware


def _check_postgres_back() -> None:
    """After a database outage, the first request that went well checks the database once."""
    try:
        with db.connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except db.DatabaseError:
        return
    POSTGRES.recovered()


def _remember_use(**kwargs: Any) -> None:
    _local.last_used = time.monotonic()


def connect() -> None:
    """Connect the end-of-request receiver (from ``JobsConfig.ready``; idempotent)."""
    request_finished.connect(_remember_use, dispatch_uid="jobs.api.connections.remember")
