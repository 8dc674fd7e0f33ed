"""Queues, priority bands and routing: the one place that declares them.

Dramatiq's own ``priority`` only reorders messages that a worker has already
prefetched, so an urgent job would still wait behind a long backlog in Redis.
Instead each queue is split into three Redis lists (bands). A job's API
priority (0-10, higher is more urgent) picks the band; every worker consumes
every band, so an urgent message is fetched as soon as its band is polled,
however long the normal band's backlog is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MIN_PRIORITY = 0
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5

#: Every queue of the ToolBoxAI spec. ``dead_letter`` holds nothing of its own:
#: Dramatiq dead-letters into each queue's ``.XQ`` set, and the admin groups them.
QUEUES: tuple[str, ...] = (
    "default",
    "high_priority",
    "low_priority",
    "email",
    "analytics",
    "ai_generation",
    "roblox",
    "tenant_ops",
    "dead_letter",
)

#: Queues that workers consume. ``dead_letter`` is only browsed, never consumed.
CONSUMED_QUEUES: tuple[str, ...] = tuple(q for q in QUEUES if q != "dead_letter")


class Band(StrEnum):
    """A priority band of a queue; each band is its own Redis list."""

    URGENT = "urgent"  # priority 7-10: drained ahead of any backlog
    NORMAL = "normal"  # priority 4-6: the queue's own list, as raw Dramatiq names it
    BULK = "bulk"  # priority 0-3: batch work that may wait


_BAND_SUFFIX = {Band.URGENT: ".urgent", Band.NORMAL: "", Band.BULK: ".bulk"}


@dataclass(frozen=True)
class QueueBand:
    queue: str
    band: Band

    @property
    def redis_queue(self) -> str:
        return self.queue + _BAND_SUFFIX[self.band]


def band_for_priority(priority: int) -> Band:
    """Map an API priority (0-10, higher is more urgent) onto a band."""
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority!r} is outside {MIN_PRIORITY}-{MAX_PRIORITY}.")
    if priority >= 7:
        return Band.URGENT
    if priority >= 4:
        return Band.NORMAL
    return Band.BULK


def redis_queue_name(queue: str, priority: int) -> str:
    """The Redis list a job of this queue and priority is sent to."""
    return QueueBand(queue, band_for_priority(priority)).redis_queue


def band_queue_names(queue: str) -> list[str]:
    """Every Redis list of one queue, most urgent first."""
    return [QueueBand(queue, band).redis_queue for band in (Band.URGENT, Band.NORMAL, Band.BULK)]


def all_redis_queue_names(queues: tuple[str, ...] | list[str] = QUEUES) -> list[str]:
    return [name for queue in queues for name in band_queue_names(queue)]


def home_queue_of(redis_queue: str) -> str:
    """The queue a Redis list belongs to (``email.urgent`` → ``email``)."""
    name = redis_queue.removesuffix(".DQ").removesuffix(".XQ")
    for suffix in (".urgent", ".bulk"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
