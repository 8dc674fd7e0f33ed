"""A submission's rows, model instances and messages are what the slower, plainer code made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.utils import timezone
from dramatiq import Message

from jobs.models import Job
from jobs.services import JobRequest
from jobs.services.submission import _prepare
from jobs.services.submission_sql import _model_plan, _rows_json
from jobs.services.submission_sql import job_instance as _job
from jobs.transport.ids import uuid4s
from jobs.transport.send import _message_encoder


def _prepared(**request: Any) -> Any:
    return _prepare(
        JobRequest(job_type="diagnostics.echo", payload={"message": "hé"}, **request),
        organization=None,
        now=timezone.now(),
        job_id=uuid4s(1)[0],
    )


def test_the_insert_rows_are_the_json_of_each_rows_columns() -> None:
    plain = _prepared()
    keyed = _prepared(idempotency_key='k"1', delay=timedelta(seconds=5), max_retries=2, priority=9)
    rows = json.loads(_rows_json([plain, keyed]))
    assert rows == [
        {
            "id": p.id_text,
            "job_type": p.job_type,
            "queue": p.queue,
            "priority": p.priority,
            "payload": p.payload,
            "max_retries": p.max_retries,
            "idempotency_key": p.idempotency_key,
            "created_at": p.created_at.isoformat(),
            "scheduled_for": p.scheduled_for.isoformat() if p.scheduled_for else None,
        }
        for p in (plain, keyed)
    ]


def _fields(job: Job) -> dict[str, Any]:
    return {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}


def test_a_submitted_job_instance_is_the_one_from_db_would_build() -> None:
    p = _prepared(priority=7)
    job = _job(p, organization=None)
    expected = Job.from_db(connection.alias, (), list(_fields(job).values()))
    assert _model_plan().plain
    assert _fields(job) == _fields(expected)
    assert set(vars(job)) == set(vars(expected))
    assert job._state.adding is False and job._state.db == connection.alias
    assert job.pk == p.id and job.payload == {
        "message": "hé",
        "sleep_seconds": 0.0,
        "fail_times": 0,
    }


@pytest.fixture
def post_init_listener() -> Iterator[list[Job]]:
    seen: list[Job] = []

    def listener(sender: type[Job], instance: Job, **kwargs: Any) -> None:
        seen.append(instance)

    post_init.connect(listener, sender=Job)
    yield seen
    post_init.disconnect(listener, sender=Job)


def test_a_post_init_listener_still_sees_submitted_jobs(post_init_listener: list[Job]) -> None:
    job = _job(_prepared(), organization=None)
    assert post_init_listener == [job]


def test_messages_are_encoded_as_dramatiqs_json_encoder_does() -> None:
    message: Message[Any] = Message(
        queue_name="default",
        actor_name="diagnostics.echo",
        args=(1, "a"),
        kwargs={"message": "hé", "n": [1.5, None]},
        options={"max_retries": 3, "redis_message_id": "r"},
    )
    encode = _message_encoder()
    assert encode is not None
    assert encode(message.asdict()) == message.encode()
