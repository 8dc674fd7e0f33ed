"""Signals the tenants app sends (it never imports the jobs app: the jobs app listens)."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after a transaction commits that changed what an API key authenticates as: a key
#: revoked, an organization deactivated or its limits changed, a membership changed. The
#: receiver (``jobs.key_invalidation``) makes every web process forget the keys it trusts.
api_keys_changed = Signal()
