"""The SSE stream replays the job's state, follows it, and closes when it finishes."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest

from jobs.services import job_submit
from tests.actors import release
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    """``[(event, data), ...]`` of an SSE body (comments and retry hints skipped)."""
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


class _Reader:
    """Reads an SSE response as it streams, up to the events a condition waits for."""

    def __init__(self, response: Any) -> None:
        self._chunks = iter(response.streaming_content)
        self.body = b""

    @property
    def events(self) -> list[tuple[str, Any]]:
        return parse_sse(self.body)

    def until(self, condition: Any) -> list[tuple[str, Any]]:
        while not condition(self.events):
            self.body += next(self._chunks)  # StopIteration: the stream ended first
        return self.events

    def rest(self) -> list[tuple[str, Any]]:
        self.body += b"".join(self._chunks)
        return self.events


def test_the_event_stream_shows_status_progress_and_partial_results_until_the_end(
    worker: dramatiq.Worker, tenant_a: Tenant
) -> None:
    # Each chunk waits for the test, which lets it go once the stream has shown
    # the state before it: a loaded machine cannot run the job past the stream's polls.
    job = job_submit(
        job_type="tests.stream_text",
        payload={"chunks": ["Photo", "synthesis ", "explained."], "hold_key": "stream"},
        organization=tenant_a.organization,
    ).job

    response = tenant_a.client.get(
        f"/api/v1/jobs/{job.pk}/events/", HTTP_ACCEPT="text/event-stream"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    stream = _Reader(response)
    try:
        stream.until(lambda events: "running" in _statuses(events))
        release("stream:1")
        stream.until(lambda events: any(name == "progress" for name, _ in events))
        release("stream:2")
        release("stream:3")
        events = stream.rest()
    finally:
        for step in (1, 2, 3):
            release(f"stream:{step}")
    statuses = _statuses(events)
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
    partials = [data["text"] for name, data in events if name == "partial"]
    assert partials == ["Photo", "synthesis ", "explained."]
    assert any(name == "progress" for name, _ in events)
    assert events[-1][1]["result"] == {"text": "Photosynthesis explained."}
    # Partial results come before the final status.
    assert [name for name, _ in events].index("partial") < len(events) - 1


def _statuses(events: list[tuple[str, Any]]) -> list[str]:
    return [data["status"] for name, data in events if name == "status"]


def test_the_event_stream_of_a_finished_job_replays_its_state_and_closes(
    broker: Any, tenant_a: Tenant
) -> None:
    created = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": {"message": "x"}}, format="json"
    ).json()
    tenant_a.client.post(f"/api/v1/jobs/{created['id']}/cancel/")

    response = tenant_a.client.get(f"/api/v1/jobs/{created['id']}/events/")

    events = parse_sse(b"".join(response.streaming_content))  # type: ignore[attr-defined]
    assert [(name, data["status"]) for name, data in events] == [("status", "cancelled")]
    assert set(events[0][1]) == set(created)


def test_the_event_stream_refuses_head_which_would_hold_a_thread_with_nowhere_to_write(
    broker: Any, tenant_a: Tenant
) -> None:
    job = job_submit(
        job_type="diagnostics.echo", payload={"message": "x"}, organization=tenant_a.organization
    ).job

    response = tenant_a.client.head(f"/api/v1/jobs/{job.pk}/events/")

    assert response.status_code == 405
    assert "HEAD" not in response["Allow"]
