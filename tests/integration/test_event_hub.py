"""The event hub: one pub/sub connection per process, its messages fanned out in memory."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from jobs.selectors.jobs import job_stream_snapshots
from jobs.transport.event_hub import EventHub
from jobs.transport.events import channel_name, publish
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.integration]


async def _until(condition: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_streams_of_one_job_share_one_subscription_and_each_gets_every_message(
    broker: Any,
) -> None:
    job_id, other_id = str(uuid.uuid4()), str(uuid.uuid4())
    received: dict[str, list[bytes]] = {"a": [], "b": [], "other": []}

    async def scenario() -> list[int]:
        hub = EventHub()
        try:
            a = await hub.follow(job_id, received["a"].append)
            b = await hub.follow(job_id, received["b"].append)
            other = await hub.follow(other_id, received["other"].append)
            subscribers = [n for _, n in broker.client.pubsub_numsub(channel_name(job_id))]
            await _until(lambda: hub.channels == 2)
            publish(job_id, "partial", {"text": "one"})
            publish(other_id, "partial", {"text": "two"})
            await _until(lambda: received["a"] and received["b"] and received["other"])
            await a.close()
            publish(job_id, "partial", {"text": "three"})
            await _until(lambda: len(received["b"]) == 2)
            await b.close()
            await other.close()
            await _until(lambda: broker.client.pubsub_numsub(channel_name(job_id))[0][1] == 0)
            return subscribers
        finally:
            await hub.aclose()

    assert asyncio.run(scenario()) == [1]
    assert [len(received[name]) for name in ("a", "b", "other")] == [1, 2, 1]
    assert b'"three"' in received["b"][1]
    assert b'"two"' in received["other"][0]


@pytest.mark.django_db
def test_the_batched_stream_read_finds_each_job_only_in_its_own_organization() -> None:
    mine, theirs = OrganizationFactory.create(), OrganizationFactory.create()
    job = JobFactory.create(organization=mine, progress=40)
    other = JobFactory.create(organization=theirs)

    rows = job_stream_snapshots(
        jobs=[(job.pk, mine.pk), (other.pk, mine.pk), (uuid.uuid4(), theirs.pk)]
    )

    assert list(rows) == [(job.pk, mine.pk)]
    assert rows[(job.pk, mine.pk)]["progress"] == 40
