"""One log line when a process loses Postgres or Redis, and one when it has them back.

Workers, web and scheduler retry through an outage on their own; these lines
are how an operator (and the chaos scenarios) see that each process noticed
the fault and came through it, without a traceback per failed call.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)


class Outage:
    """A dependency of this process that can fail and come back; each change is logged once.

    Parameters:
      what: the dependency's name in the log lines ("Postgres", "Redis").
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._since: float | None = None
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """Record a failed call; the first one of an outage is logged."""
        if self._since is not None:
            return
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning(
            "%s is unreachable (%s: %s); retrying until it is back.",
            self.what,
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
        )

    def recovered(self) -> None:
        """Record a call that worked; the first one after an outage is logged."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.warning(
                "%s is reachable again after %.1f s of failures.",
                self.what,
                time.monotonic() - since,
            )


#: This process's view of the ledger's database.
POSTGRES = Outage("Postgres")
#: This process's view of the broker's Redis.
REDIS = Outage("Redis")
