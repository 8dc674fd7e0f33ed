"""``roblox.publish_message``: Roblox Open Cloud Messaging Service (the Roblox sync queue)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.payloads import PayloadSerializer
from jobs.registry import job_type
from jobs.runtime import current_job
from jobs.services.roblox import roblox_publish


class RobloxMessagePayload(PayloadSerializer):
    universe_id = serializers.IntegerField(min_value=1)
    # Roblox limits: topic names up to 80 characters, messages up to 1 kB.
    topic = serializers.RegexField(r"^[A-Za-z0-9_\-.]+$", max_length=80)
    message = serializers.CharField(max_length=1_024, trim_whitespace=False)


@job_type(
    "roblox.publish_message",
    queue="roblox",
    payload=RobloxMessagePayload,
    description="Publish a message to a Roblox universe's MessagingService topic.",
    max_retries=5,
    min_backoff_ms=2_000,
    max_backoff_ms=120_000,
    time_limit_ms=60_000,
    soft_time_limit_ms=45_000,
)
def publish_message(*, universe_id: int, topic: str, message: str) -> dict[str, Any]:
    """Publish once; a redelivered job does not publish again."""
    job = current_job()
    return roblox_publish(
        job_id=job.job_id if job else None,
        attempt=job.attempt if job else 1,
        universe_id=universe_id,
        topic=topic,
        message=message,
    )
