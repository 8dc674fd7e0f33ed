"""Roblox Open Cloud Messaging Service: publish a message to a universe's topic."""

from __future__ import annotations

from urllib.parse import quote

from dramatiq import Retry

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError
from jobs.integrations import ProviderUnavailable, redact, retry_after_ms


def publish_message(*, universe_id: int, topic: str, message: str) -> int:
    """``POST /messaging-service/v1/universes/{universeId}/topics/{topic}``; returns the status.

    Uses ROBLOX_API_KEY (sent as ``x-api-key``) and ROBLOX_BASE_URL.
    """
    api_key = jobs_settings.roblox_api_key
    if not api_key:
        raise PermanentJobError(
            "ROBLOX_API_KEY is not set, so nothing can be published to Roblox. Create an Open "
            "Cloud key with the messaging-service:publish permission, set ROBLOX_API_KEY for "
            "the workers, then retry the job."
        )
    base = jobs_settings.roblox_base_url.rstrip("/")
    url = f"{base}/messaging-service/v1/universes/{universe_id}/topics/{quote(topic, safe='')}"
    # Imported on first use: the HTTP client adds about 1.5 MiB to every worker process
    # (and to the metrics exporter), which most never spend on Roblox.
    import httpx2

    try:
        response = httpx2.post(
            url,
            json={"message": message},
            headers={"x-api-key": api_key},
            timeout=jobs_settings.roblox_timeout_ms / 1000,
        )
    except httpx2.HTTPError as exc:
        raise ProviderUnavailable(
            f"Roblox Open Cloud at {base} is unreachable: {redact(str(exc), api_key)}"
        ) from None
    status = response.status_code
    if status == 429:
        raise Retry("Roblox rate limit (429).", delay=retry_after_ms(response.headers))
    if status >= 500:
        raise ProviderUnavailable(f"Roblox answered {status}: {redact(response.text, api_key)}")
    if status >= 400:
        raise PermanentJobError(
            f"Roblox refused the message ({status}): {redact(response.text, api_key)}. Retrying "
            "cannot help; check ROBLOX_API_KEY's permissions, the universe id and the topic."
        )
    return status
