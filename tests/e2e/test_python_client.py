"""The Python client (toolboxai_jobs_client) against a live gunicorn and a real worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from tenants.models import ApiScope
from tests.e2e.conftest import free_port
from tests.factories import JobFactory
from tests.integration.api.conftest import key_client, make_tenant
from toolboxai_jobs_client import (
    Client,
    Conflict,
    InvalidRequest,
    MissingScope,
    NotFound,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _recorder(seen: list[str]) -> Any:
    """An ``on_event`` callback that records the names of the events it sees."""
    return lambda name, data: seen.append(name)


def test_the_client_submits_waits_through_the_stream_and_manages_jobs_and_dead_letters(
    worker: Any, start_web: Any
) -> None:
    tenant = make_tenant("client-school")
    _, writer_key = key_client(tenant, *ApiScope.values, name="client")
    _, reader_key = key_client(tenant, ApiScope.JOBS_READ, name="reader")
    web = start_web()
    events: list[str] = []

    with Client(web.url, writer_key, timeout=20) as jobs:
        job = jobs.submit("diagnostics.echo", {"message": "hi", "sleep_seconds": 0.3})
        done = jobs.wait(job.id, timeout=60, on_event=lambda name, data: events.append(name))

        assert (done.status, done.result) == ("succeeded", {"message": "hi"})
        assert done.finished_at is not None
        assert events[0] == "status" and events[-1] == "status"  # through the stream

        many = jobs.submit_many(
            [{"type": "diagnostics.echo", "payload": {"message": m}} for m in "ab"]
        )
        assert [jobs.wait(j.id, timeout=60).result for j in many] == [
            {"message": "a"},
            {"message": "b"},
        ]
        assert jobs.get(many[0].id).status == "succeeded"

        delayed = jobs.submit("diagnostics.echo", {"message": "later"}, delay_seconds=3600)
        assert jobs.cancel(delayed.id).status == "cancelled"
        assert jobs.retry(delayed.id).status == "queued"
        with pytest.raises(Conflict) as conflict:
            jobs.cancel(done.id)
        assert conflict.value.code == "invalid_transition"
        with pytest.raises(NotFound) as missing:
            jobs.get(str(uuid.uuid4()))
        assert (missing.value.status, missing.value.code) == (404, "job_not_found")
        with pytest.raises(InvalidRequest) as invalid:
            jobs.submit("no.such.type")
        assert "type" in invalid.value.fields

        now = timezone.now()
        dead = [
            JobFactory.create(
                organization=tenant.organization,
                payload={"message": f"again {i}"},
                status=JobStatus.FAILED,
                attempts=1,
                error_type="Boom",
                error_message=f"Boom on item {i}",
                finished_at=now,
                dead_lettered_at=now,
            )
            for i in range(3)
        ]
        [group] = jobs.dead_letters.list()
        assert (group.type, group.error_type, group.count) == ("diagnostics.echo", "Boom", 3)
        assert sorted(j.id for j in jobs.dead_letters.jobs(group.id, page_size=2)) == sorted(
            str(j.pk) for j in dead
        )
        replayed = jobs.dead_letters.replay(group.id, [str(dead[0].pk)])
        assert (replayed.action, replayed.done, replayed.skipped) == ("replay", 1, 0)
        assert jobs.wait(str(dead[0].pk), timeout=60).result == {"message": "again 0"}
        purged = jobs.dead_letters.purge(group.id)
        assert (purged.done, sorted(purged.job_ids)) == (2, sorted(str(j.pk) for j in dead[1:]))
        assert jobs.dead_letters.list() == []
        with pytest.raises(NotFound) as gone:
            jobs.dead_letters.get(group.id)
        assert gone.value.code == "dead_letter_group_not_found"
    assert (
        JobEvent.objects.filter(kind=JobEventKind.PURGED, detail__api_key__isnull=False).count()
        == 2
    )

    with Client(web.url, reader_key) as reader:
        with pytest.raises(MissingScope) as refused:
            reader.submit("diagnostics.echo", {"message": "no"})
        assert (refused.value.code, refused.value.required_scope) == ("missing_scope", "jobs:write")
    assert not Job.objects.filter(payload__message="no").exists()


def test_wait_falls_back_to_polling_when_the_stream_endpoint_is_unreachable_or_missing(
    worker: Any, start_web: Any
) -> None:
    tenant = make_tenant("poll-school")
    web = start_web()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused

    for stream_base_url in (closed, f"{web.url}/no-events-here"):
        events: list[str] = []
        with Client(
            web.url, tenant.raw_key, stream_base_url=stream_base_url, poll_interval=0.1
        ) as jobs:
            job = jobs.submit("diagnostics.echo", {"message": "polled", "sleep_seconds": 0.3})
            done = jobs.wait(job.id, timeout=60, on_event=_recorder(events))

        assert (done.status, done.result) == ("succeeded", {"message": "polled"}), stream_base_url
        assert events == [], f"{stream_base_url}: no event came through a stream"
