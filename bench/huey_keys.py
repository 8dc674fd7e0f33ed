"""Redis keys of system D (Huey), shared by its app, its client and the runner."""

from __future__ import annotations

#: The Huey instance's name, whose queue the workers consume.
LIVE_NAME = "bench"
#: How many jobs D's workers finished (INCRBY from each worker process, in batches).
DONE_KEY = "bench:huey:done"
#: Per worker process: the wall-clock time its last job finished.
LAST_PREFIX = "bench:huey:last:"


def queue_key(name: str = LIVE_NAME) -> str:
    """The sorted set PriorityRedisHuey named ``name`` enqueues to (huey.storage)."""
    return f"huey.redis.{name}"
