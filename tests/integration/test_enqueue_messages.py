"""Messages sent in a pipeline reach Redis exactly as RedisBroker.enqueue would have sent them."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq import Message
from dramatiq.common import dq_name

from jobs.services.dispatch import jobs_send
from jobs.transport.broker import JobsRedisBroker

pytestmark = [pytest.mark.integration]


def _stored(broker: JobsRedisBroker, queue_name: str) -> list[Message[Any]]:
    bodies = broker.client.hvals(f"{broker.namespace}:{queue_name}.msgs")
    return [Message.decode(body) for body in bodies]


def test_one_message_and_a_delayed_one_are_stored_with_their_redis_ids_and_eta(
    broker: JobsRedisBroker,
) -> None:
    message: Message[Any] = Message(
        queue_name="default",
        actor_name="diagnostics.echo",
        args=(),
        kwargs={"message": "hé"},
        options={"max_retries": 3, "organization_id": 7},
        message_id="11111111-1111-4111-8111-111111111111",
        message_timestamp=1_700_000_000_000,
    )
    assert jobs_send([(message, None)], mark_enqueued=False)
    (now,) = _stored(broker, "default")
    assert now.asdict() == {
        **message.asdict(),
        "options": {**message.options, "redis_message_id": now.options["redis_message_id"]},
    }

    assert jobs_send([(message, None), (message, 60_000)], mark_enqueued=False)
    (later,) = _stored(broker, dq_name("default"))
    assert later.queue_name == dq_name("default")
    assert later.options["eta"] > message.message_timestamp
    assert later.kwargs == message.kwargs and later.message_id == message.message_id
    ids = {m.options["redis_message_id"] for m in _stored(broker, "default")}
    assert len(ids | {later.options["redis_message_id"]}) == 3
