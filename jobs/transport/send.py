"""Sends messages to Redis: many dispatches, and their queues' wake-ups, in one round trip."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.common import dq_name

from jobs.transport.broker import JobsRedisBroker, get_broker
from jobs.transport.ids import uuid4_texts

#: A message to send, and its delay in milliseconds (None: at once).
Outgoing = tuple[Message[Any], int | None]


def send_messages(items: Sequence[Outgoing], *, broker: JobsRedisBroker | None = None) -> None:
    """Send messages (delayed ones to their delay queues) in one Redis pipeline.

    Mirrors ``RedisBroker.enqueue``, hooks included, but sends every dispatch
    and the queues' wake-ups in one round trip. Raises ``redis.RedisError``
    when Redis does not take them; nothing is half-sent within one queue's
    script call, and a resend is skipped by the ledger.
    """
    if not items:
        return
    broker = broker or get_broker()
    # The enqueue hooks run only for middleware that define them: calling the
    # base class's no-ops of every middleware for each message is wasted work.
    before: list[Any] = [m.before_enqueue for m in broker.middleware_defining("before_enqueue")]
    after: list[Any] = [m.after_enqueue for m in broker.middleware_defining("after_enqueue")]
    encode = _message_encoder()
    redis_ids = uuid4_texts(len(items))
    calls: list[tuple[str, str, Sequence[Any]]] = []
    sent: list[Outgoing] = []
    now_ms = int(time.time() * 1000)
    for (message, delay), redis_id in zip(items, redis_ids, strict=True):
        queue_name = message.queue_name
        options = {**message.options, "redis_message_id": redis_id}
        if delay is not None:
            queue_name = dq_name(queue_name)
            options["eta"] = now_ms + delay
        if encode is None or before or after:
            # Message.copy() is dataclasses.replace(), which inspects the fields on every call.
            message = Message(
                queue_name,
                message.actor_name,
                message.args,
                message.kwargs,
                options,
                message.message_id,
                message.message_timestamp,
            )
            for hook in before:
                hook(broker, message, delay)
            body = message.encode() if encode is None else encode(message.asdict())
            if after:
                sent.append((message, delay))
        else:
            # Nothing sees the sent message: encode its fields without building it.
            body = encode(
                {
                    "queue_name": queue_name,
                    "actor_name": message.actor_name,
                    "args": message.args,
                    "kwargs": message.kwargs,
                    "options": options,
                    "message_id": message.message_id,
                    "message_timestamp": message.message_timestamp,
                }
            )
        calls.append(("enqueue", queue_name, (redis_id, body)))
    broker.dispatch_with_wakeups(calls)
    for message, delay in sent:
        for hook in after:
            hook(broker, message, delay)


_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _message_encoder() -> Callable[[dict[str, Any]], bytes] | None:
    """Encodes a message's fields as ``Message.encode`` would; None: use ``Message.encode``.

    Dramatiq's ``JSONEncoder.encode`` is ``json.dumps(message.asdict())``,
    which builds a new ``json.JSONEncoder`` per message; the same bytes come
    from one encoder built once. Any other encoder is used as configured.
    """
    if type(dramatiq.get_encoder()) is not dramatiq.JSONEncoder:
        return None
    return _encode_fields


def _encode_fields(fields: dict[str, Any]) -> bytes:
    return _compact_json(fields).encode()
