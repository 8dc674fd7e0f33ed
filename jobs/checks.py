"""System checks of the jobs app (``manage.py check``)."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from jobs.transport.client import build_redis_client, server_eviction_policy

EVICTION_HINT = (
    "Eviction silently drops queue entries, so jobs are lost. Set `maxmemory-policy "
    "noeviction` in redis.conf (or `CONFIG SET maxmemory-policy noeviction`), or the "
    "equivalent parameter of a managed Redis."
)


@register("jobs")
def check_redis_eviction_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Redis must never evict keys: warn in development, error with production settings."""
    try:
        client = build_redis_client()
        try:
            policy = server_eviction_policy(client)
        finally:
            client.close()
    except redis.RedisError as exc:
        return [
            Warning(
                f"Could not read Redis's maxmemory-policy ({type(exc).__name__}: {exc}).",
                hint="Make sure REDIS_URL is reachable and that its policy is noeviction.",
                id="jobs.W801",
            )
        ]
    if policy is None or policy == "noeviction":
        return []
    text = f"Redis's maxmemory-policy is {policy!r}, not 'noeviction'."
    if settings.DEBUG:
        return [Warning(text, hint=EVICTION_HINT, id="jobs.W802")]
    return [Error(text, hint=EVICTION_HINT, id="jobs.E802")]
