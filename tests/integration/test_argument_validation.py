"""A payload is validated once, at submission; the worker checks again only what it cannot trust."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest
from rest_framework import serializers

from jobs.models import Job, JobStatus
from jobs.payloads import PayloadSerializer
from jobs.registry import VALIDATED_OPTION, JobType, get_job_type
from jobs.services import job_submit
from jobs.transport.broker import JobsRedisBroker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _stored_bodies(broker: JobsRedisBroker) -> dict[str, dict[str, Any]]:
    ns = broker.namespace
    return {
        redis_id.decode(): json.loads(body)
        for redis_id, body in broker.client.hgetall(f"{ns}:default.msgs").items()
    }


def test_a_submitted_payload_carries_the_stamp_the_worker_computes_for_it(
    broker: JobsRedisBroker,
) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "hi"}).job
    (body,) = _stored_bodies(broker).values()
    assert body["message_id"] == str(job.pk)
    # The stamp covers the normalised payload (defaults filled in) as the worker decodes it.
    assert body["kwargs"] == {"message": "hi", "sleep_seconds": 0.0, "fail_times": 0}
    stamp = body["options"][VALIDATED_OPTION]
    assert stamp == get_job_type("diagnostics.echo").payload_stamp(body["kwargs"])


def test_the_stamp_changes_with_the_payload_and_with_the_rules() -> None:
    echo = get_job_type("diagnostics.echo")
    payload = {"message": "hi", "sleep_seconds": 0.0, "fail_times": 0}
    assert echo.payload_stamp(payload) == echo.payload_stamp(dict(reversed(payload.items())))
    assert echo.payload_stamp(payload) != echo.payload_stamp({**payload, "fail_times": 1})

    class Stricter(PayloadSerializer):
        message = serializers.CharField(max_length=5)
        sleep_seconds = serializers.FloatField(min_value=0, max_value=60, default=0)
        fail_times = serializers.IntegerField(min_value=0, max_value=10, default=0)

    redeployed = JobType(name=echo.name, fn=echo.fn, queue=echo.queue, payload_serializer=Stricter)
    assert redeployed.payload_stamp(payload) != echo.payload_stamp(payload)
    assert JobType(name="x", fn=echo.fn, queue="default").payload_stamp(payload) is None


def test_a_stamped_message_whose_payload_was_changed_afterwards_is_validated_and_refused(
    broker: JobsRedisBroker, wait_for: Any
) -> None:
    ns = broker.namespace
    good = job_submit(job_type="diagnostics.echo", payload={"message": "fine"}).job
    edited = job_submit(job_type="diagnostics.echo", payload={"message": "edited"}).job
    for redis_id, body in _stored_bodies(broker).items():
        if body["message_id"] == str(edited.pk):
            assert VALIDATED_OPTION in body["options"]  # the stamp stays, the payload changes
            body["kwargs"]["sleep_seconds"] = 99  # over the type's max_value of 60
            broker.client.hset(f"{ns}:default.msgs", redis_id, json.dumps(body))

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: Job.objects.get(pk=good.pk).status == JobStatus.SUCCEEDED)
        wait_for(lambda: Job.objects.get(pk=edited.pk).status == JobStatus.FAILED)
    finally:
        worker.stop(timeout=10_000)

    refused = Job.objects.get(pk=edited.pk)
    assert refused.error_type == "InvalidArguments"
    assert "sleep_seconds" in refused.error_message
    assert refused.attempts == 0, "it never ran"
