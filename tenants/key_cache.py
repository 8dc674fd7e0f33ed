"""The API keys a process trusts without a query, and how every process is told to forget them.

A key found valid is kept for ``API_KEY_CACHE_SECONDS`` with its membership,
organization and user as read then, which saves a query with three joins on
every API request. So that a revoked key, or the key of a deactivated
organization, stops working at once everywhere, every such change calls
:func:`invalidate_everywhere`: this process forgets its keys, and once the
transaction commits :data:`tenants.signals.api_keys_changed` is sent; the jobs
app relays it to every process over Redis (``jobs.key_invalidation``).

A process trusts its cache only while it can hear about changes made
elsewhere: the relay installs that test with :func:`set_trust_check` (its
listener is subscribed). Without one (the tenants app on its own), entries
live for their TTL. A lookup that raced a forget does not store what it read
(the generation changed meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import transaction

from tenants.models import ApiKey
from tenants.signals import api_keys_changed

logger = logging.getLogger(__name__)

#: Keys trusted at once by one process; past this the cache starts over.
MAX_ENTRIES = 10_000

#: hash of a raw key → (monotonic expiry, the key with its membership, organization and user).
_entries: dict[str, tuple[float, ApiKey]] = {}
_lock = threading.Lock()
_generation = 0
_trust_check: Callable[[], bool] | None = None


def set_trust_check(check: Callable[[], bool] | None) -> None:
    """Install the test of whether this process hears about changes made elsewhere now."""
    global _trust_check
    _trust_check = check


def trusted() -> bool:
    """Whether cached keys may be used now (no trust check installed: yes, for their TTL)."""
    check = _trust_check
    return check is None or check()


def generation() -> int:
    """Read before a lookup and pass to :func:`put`: a forget in between voids the lookup."""
    return _generation


def get(digest: str) -> ApiKey | None:
    """The trusted, unexpired key of ``digest``, or None."""
    if not trusted():
        return None
    cached = _entries.get(digest)
    if cached is None or cached[0] <= time.monotonic():
        return None
    return cached[1]


def put(digest: str, api_key: ApiKey, *, ttl_seconds: float, since_generation: int) -> None:
    """Trust ``api_key`` for ``ttl_seconds``, unless the cache was forgotten since the lookup."""
    if ttl_seconds <= 0 or not trusted():
        return
    with _lock:
        if _generation != since_generation:
            return
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[digest] = (time.monotonic() + ttl_seconds, api_key)


def forget() -> None:
    """Drop every key this process trusts."""
    global _generation
    with _lock:
        _entries.clear()
        _generation += 1


def invalidate_everywhere() -> None:
    """Forget every trusted key here now, and in every process once the transaction commits."""
    forget()
    transaction.on_commit(_committed)


def _committed() -> None:
    # Again after the commit: a request of this process may have read the old rows meanwhile.
    forget()
    for _receiver, outcome in api_keys_changed.send_robust(sender=ApiKey):
        if isinstance(outcome, Exception):
            logger.error(
                "Could not tell other processes to forget their API keys (%s: %s); they trust "
                "them for at most API_KEY_CACHE_SECONDS.",
                type(outcome).__name__,
                outcome,
                exc_info=outcome,
            )
