"""The bounded pool of database connections an async web process reads the ledger through.

Django's ORM is synchronous, and a connection belongs to the thread that
opened it. Run on the event loop's default executor, or a thread per
request, every open stream could end up holding a connection for its whole
life: 250 streams once exhausted Postgres's ``max_connections``. Here a fixed
set of API_EVENTS_DB_CONNECTIONS threads does every ledger read of the
process's event streams, each with its own connection, kept between calls
(``CONN_MAX_AGE``) and checked before each one like a request's. A stream
borrows a thread for one short query and gives it back while it waits; when
all are busy, calls queue here rather than at Postgres.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django import db
from django.db import close_old_connections

from jobs.api.connections import RECENT_USE_SECONDS
from jobs.conf import jobs_settings


class LedgerPool:
    """At most ``size`` threads, hence database connections, for one process's ledger reads.

    Parameters:
      size: threads (and connections) at most.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="ledger-pool")

    async def run[T](self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on one of the pool's threads, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(_checked, fn, *args, **kwargs)
        )


_local = threading.local()


def _checked[T](fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    # As Django does around a request: drop a broken or too old connection first, so
    # this call reconnects. A connection used less than RECENT_USE_SECONDS ago is
    # trusted without the SELECT 1 probe (as jobs.api.connections does for requests).
    close_old_connections()
    last_used = getattr(_local, "last_used", None)
    if last_used is not None and time.monotonic() - last_used < RECENT_USE_SECONDS:
        for conn in db.connections.all(initialized_only=True):
            if conn.connection is not None and not conn.errors_occurred:
                conn.health_check_done = True  # type: ignore[attr-defined]
    try:
        return fn(*args, **kwargs)
    finally:
        _local.last_used = time.monotonic()


@functools.cache
def ledger_pool() -> LedgerPool:
    """This process's pool, sized by API_EVENTS_DB_CONNECTIONS on first use."""
    return LedgerPool(jobs_settings.api_events_db_connections)
