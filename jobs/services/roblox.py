"""Publishing to Roblox Open Cloud's MessagingService, at most once per job."""

from __future__ import annotations

from typing import Any

from jobs.integrations import roblox
from jobs.services.deliveries import delivery_send_once


def roblox_publish(
    *, job_id: str | None, attempt: int, universe_id: int, topic: str, message: str
) -> dict[str, Any]:
    def send() -> str:
        roblox.publish_message(universe_id=universe_id, topic=topic, message=message)
        return ""  # the Messaging Service returns no message id

    if job_id is None:
        send()
        return {"universe_id": universe_id, "topic": topic, "already_published": False}
    result = delivery_send_once(
        job_id=job_id, channel="roblox", provider="roblox", attempt=attempt, send=send
    )
    return {
        "universe_id": universe_id,
        "topic": topic,
        "already_published": not result.sent_now,
    }
