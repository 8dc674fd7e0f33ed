"""The events service: event streams on an event loop (gunicorn with uvicorn workers).

Real processes (the events service, the threaded web server, rundramatiq, nginx
with the shipped snippet) and real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from jobs.services import job_submit
from jobs.transport.events import channel_name
from jobs.transport.stream_leases import event_streams_open
from tests.e2e.conftest import WebServer
from tests.integration.api.conftest import make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_events_service_streams_status_progress_and_partial_results_from_one_hub(
    broker: Any, start_web: Any, start_command: Any, wait_for: Any
) -> None:
    events: WebServer = start_web(asgi=True, API_EVENTS_HEARTBEAT_SECONDS="1")
    start_command("rundramatiq", "--processes", "1", "--threads", "2")
    tenant = make_tenant("hub-stream")
    jobs = [
        job_submit(
            job_type="tests.stream_text",
            payload={"chunks": ["Photo", "synthesis ", "explained."], "step_seconds": 0.5},
            organization=tenant.organization,
        ).job
        for _ in range(2)
    ]

    async def follow_all() -> tuple[list[int], list[list[tuple[str, Any]]]]:
        async with httpx.AsyncClient(
            base_url=events.url,
            headers={"Authorization": f"Bearer {tenant.raw_key}"},
            timeout=30,
        ) as client:

            async def follow(job_id: str) -> list[tuple[str, Any]]:
                response = await client.get(f"/api/v1/jobs/{job_id}/events/")
                assert response.status_code == 200, response.text
                assert response.headers["content-type"].startswith("text/event-stream")
                return parse_sse(response.content)

            async def subscribers_while_open() -> list[int]:
                # Two streams follow each job: still one subscription of its channel.
                channels = [channel_name(str(job.pk)) for job in jobs]
                deadline = asyncio.get_running_loop().time() + 10
                while True:
                    counts = [n for _, n in broker.client.pubsub_numsub(*channels)]
                    if all(counts) or asyncio.get_running_loop().time() > deadline:
                        return counts
                    await asyncio.sleep(0.05)

            subscribers, *streams = await asyncio.gather(
                subscribers_while_open(), *[follow(str(job.pk)) for job in jobs for _ in range(2)]
            )
            return subscribers, streams

    subscribers, streams = asyncio.run(follow_all())
    assert subscribers == [1, 1]
    for stream in streams:
        names = [name for name, _ in stream]
        assert names[0] == "status"
        assert stream[-1][0] == "status" and stream[-1][1]["status"] == "succeeded"
        assert stream[-1][1]["result"] == {"text": "Photosynthesis explained."}
        assert [data["text"] for name, data in stream if name == "partial"][-1] == "explained."
        progress = [data["progress"] for name, data in stream if name == "progress"]
        assert progress and progress == sorted(progress)
        assert "changed" not in names  # the hub's notices are never shown
    wait_for(lambda: event_streams_open(organization_id=tenant.organization.pk) == 0, timeout=10)
    channels = [channel_name(str(job.pk)) for job in jobs]
    wait_for(lambda: [n for _, n in broker.client.pubsub_numsub(*channels)] == [0, 0], timeout=10)
