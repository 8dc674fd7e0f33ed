"""Payloads Postgres cannot store, or nested too deeply, are refused before the INSERT, from
every caller: Python code, django.tasks and (tests/integration/api) the REST API."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker

from jobs.errors import InvalidPayload
from jobs.models import Job, JobOutbox
from jobs.selectors.queues import queue_stats
from jobs.services import job_submit
from tests import tasks as test_tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _nothing_written_or_sent() -> bool:
    ready = sum(s.ready for s in queue_stats())
    return not Job.objects.exists() and not JobOutbox.objects.exists() and ready == 0


@pytest.mark.parametrize(
    "payload",
    [{"key": "\ud800"}, {"key": "k", "\udfff": 1}, {"key": "k", "x": ["\x00"]}],
    ids=["surrogate-value", "surrogate-key", "nul"],
)
def test_text_jsonb_cannot_store_is_refused_before_the_insert_and_nothing_is_sent(
    broker: RedisBroker, payload: dict[str, Any]
) -> None:
    # tests.count has no payload serializer: this text would reach Postgres's jsonb.
    with pytest.raises(InvalidPayload):
        job_submit(job_type="tests.count", payload=payload)

    assert _nothing_written_or_sent()


def test_a_django_task_whose_arguments_hold_a_lone_surrogate_is_refused(
    broker: RedisBroker,
) -> None:
    with pytest.raises(InvalidPayload) as info:
        test_tasks.echo.enqueue("fine", "\ud800")

    assert list(info.value.errors) == ["args.1"]
    assert _nothing_written_or_sent()


@pytest.mark.parametrize("levels", [100, 5000])
def test_a_django_task_whose_arguments_are_nested_too_deeply_is_refused_naming_the_limit(
    broker: RedisBroker, levels: int
) -> None:
    with pytest.raises(InvalidPayload, match="JOBS_MAX_PAYLOAD_DEPTH=64") as info:
        test_tasks.echo.enqueue(_lists(levels))

    assert list(info.value.errors) == ["payload"]
    assert _nothing_written_or_sent()


def test_a_django_task_nested_within_the_limit_is_enqueued(broker: RedisBroker) -> None:
    # The payload (1) holds args (2), which holds the argument: 62 more levels fit.
    result = test_tasks.echo.enqueue(_lists(62))

    assert Job.objects.get(pk=result.id).payload["args"] == [_lists(62)]
