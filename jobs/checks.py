"""System checks of the jobs app (``manage.py check``)."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from jobs.conf import jobs_settings

EVICTION_HINT = (
    "Eviction silently drops queue entries, so jobs are lost. Set `maxmemory-policy "
    "noeviction` in redis.conf (or `CONFIG SET maxmemory-policy noeviction`), or the "
    "equivalent parameter of a managed Redis."
)


@register("jobs")
def check_redis_eviction_policy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Redis must never evict keys: warn in development, error with production settings."""
    try:
        policy = redis_eviction_policy(jobs_settings.redis_url)
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


def redis_eviction_policy(url: str) -> str | None:
    """The server's ``maxmemory-policy``, from CONFIG GET or, if CONFIG is refused, INFO."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        try:
            value = client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError:
            # Managed Redis services and ACLs often refuse CONFIG; INFO reports it too.
            value = client.info("memory").get("maxmemory_policy")
    finally:
        client.close()
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
