"""Bulk submission: every payload validated on its own, one INSERT, one pipelined send.

Real Postgres and Redis: the rows, the messages in Redis, idempotency keys,
the organization's rate limit and quota, and the log lines.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from dramatiq.common import dq_name

from jobs.errors import InvalidPayload, InvalidSubmission, QuotaExceeded, RateLimited
from jobs.models import Job, JobOutbox, JobStatus
from jobs.queues import redis_queue_name
from jobs.services import JobRequest, job_submit_many
from jobs.services.outbox import outbox_forget_flush
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_each_payload_of_a_batch_is_normalised_on_its_own(broker: Any) -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": "a"}),
        JobRequest(job_type="diagnostics.echo", payload={"message": "b", "sleep_seconds": 0.5}),
        JobRequest(job_type="diagnostics.echo", payload={"message": "c", "fail_times": 2}),
        JobRequest(job_type="diagnostics.echo", payload={"message": "d"}),
    ]

    submissions = job_submit_many(requests=requests)

    payloads = [Job.objects.get(pk=s.job.pk).payload for s in submissions]
    assert payloads == [
        {"message": "a", "sleep_seconds": 0.0, "fail_times": 0},
        {"message": "b", "sleep_seconds": 0.5, "fail_times": 0},
        {"message": "c", "sleep_seconds": 0.0, "fail_times": 2},
        {"message": "d", "sleep_seconds": 0.0, "fail_times": 0},
    ]
    messages = [s.job.payload for s in submissions]
    assert messages == payloads


@pytest.mark.parametrize(
    ("bad", "fields"),
    [
        ({"message": "m", "colour": "red"}, {"colour"}),
        ({"message": "m", "sleep_seconds": 99}, {"sleep_seconds"}),
        ({"sleep_seconds": 1}, {"message"}),
    ],
)
def test_a_bad_payload_after_good_ones_reports_only_its_own_errors(
    broker: Any, bad: dict[str, Any], fields: set[str]
) -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": "ok", "sleep_seconds": 2}),
        JobRequest(job_type="diagnostics.echo", payload={"message": "ok"}),
        JobRequest(job_type="diagnostics.echo", payload=bad),
    ]

    with pytest.raises(InvalidPayload) as info:
        job_submit_many(requests=requests)

    assert info.value.index == 2
    assert set(info.value.errors) == fields
    assert not Job.objects.exists()


# --- The one-statement INSERT and the pipelined send ---------------------------------


def _messages(broker: Any, redis_queue: str) -> dict[str, dict[str, Any]]:
    """The messages waiting in one Redis list, by job id."""
    bodies = broker.client.hvals(f"{broker.namespace}:{redis_queue}.msgs")
    return {m["message_id"]: m for m in (json.loads(b) for b in bodies)}


def test_a_batch_writes_every_row_and_sends_every_message_after_the_commit(broker: Any) -> None:
    org = OrganizationFactory.create()
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": "plain"}),
        JobRequest(
            job_type="diagnostics.echo", payload={"message": "urgent"}, priority=9, max_retries=7
        ),
        JobRequest(
            job_type="diagnostics.echo", payload={"message": "later"}, delay=timedelta(hours=1)
        ),
        JobRequest(job_type="diagnostics.echo", payload={"message": "q"}, queue="low_priority"),
    ]

    with transaction.atomic():
        submissions = job_submit_many(requests=requests, organization=org)
        assert not _messages(broker, redis_queue_name("default", 5)), (
            "nothing is sent before commit"
        )

    rows = {str(r.pk): r for r in Job.objects.filter(organization=org)}
    assert set(rows) == {str(s.job.pk) for s in submissions}
    for s in submissions:
        row = rows[str(s.job.pk)]
        assert s.created and row.status == JobStatus.QUEUED and row.attempts == 0
        assert (row.job_type, row.queue, row.priority, row.payload, row.max_retries) == (
            s.job.job_type,
            s.job.queue,
            s.job.priority,
            s.job.payload,
            s.job.max_retries,
        )
        assert row.created_at == s.job.created_at and row.enqueued_at == row.created_at
        assert s.job.organization == org and not s.job._state.adding
    plain, urgent, later, low = (rows[str(s.job.pk)] for s in submissions)
    assert urgent.max_retries == 7 and urgent.priority == 9
    assert later.scheduled_for is not None and later.scheduled_for > later.created_at
    assert low.queue == "low_priority"

    sent = {
        **_messages(broker, redis_queue_name("default", plain.priority)),
        **_messages(broker, redis_queue_name("default", 9)),
        **_messages(broker, dq_name(redis_queue_name("default", later.priority))),
        **_messages(broker, redis_queue_name("low_priority", low.priority)),
    }
    assert set(sent) == set(rows)
    for job_id, message in sent.items():
        row = rows[job_id]
        assert message["actor_name"] == "diagnostics.echo"
        assert message["kwargs"] == row.payload
        assert message["options"]["organization_id"] == org.pk
        assert message["options"]["max_retries"] == row.max_retries
    assert sent[str(later.pk)]["options"]["eta"] > time.time() * 1000 + 3_500_000
    outbox_forget_flush()
    assert JobOutbox.objects.count() == 0


def test_a_rolled_back_batch_leaves_no_row_no_outbox_and_sends_nothing(broker: Any) -> None:
    org = OrganizationFactory.create()
    with pytest.raises(RuntimeError), transaction.atomic():
        job_submit_many(
            requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "x"})] * 3,
            organization=org,
        )
        raise RuntimeError("the caller's transaction fails")

    assert not Job.objects.filter(organization=org).exists()
    assert JobOutbox.objects.count() == 0
    assert not _messages(broker, redis_queue_name("default", 5))


def test_idempotency_keys_in_a_batch_return_the_earlier_jobs_and_send_only_new_ones(
    broker: Any,
) -> None:
    org = OrganizationFactory.create()
    first = job_submit_many(
        requests=[
            JobRequest(job_type="diagnostics.echo", payload={"message": "a"}, idempotency_key="a"),
            JobRequest(job_type="diagnostics.echo", payload={"message": "b"}, idempotency_key="b"),
        ],
        organization=org,
    )
    other_org = OrganizationFactory.create()

    again = job_submit_many(
        requests=[
            JobRequest(job_type="diagnostics.echo", payload={"message": "b2"}, idempotency_key="b"),
            JobRequest(job_type="diagnostics.echo", payload={"message": "c"}, idempotency_key="c"),
        ],
        organization=org,
    )
    elsewhere = job_submit_many(
        requests=[
            JobRequest(job_type="diagnostics.echo", payload={"message": "b"}, idempotency_key="b")
        ],
        organization=other_org,
    )

    assert [s.created for s in again] == [False, True]
    assert again[0].job.pk == first[1].job.pk and again[0].job.payload["message"] == "b"
    assert elsewhere[0].created, "keys are scoped by organization"
    assert Job.objects.filter(organization=org).count() == 3
    assert len(_messages(broker, redis_queue_name("default", 5))) == 4
    with pytest.raises(InvalidSubmission, match="share an idempotency key"):
        job_submit_many(
            requests=[
                JobRequest(
                    job_type="diagnostics.echo", payload={"message": "d"}, idempotency_key="d"
                ),
                JobRequest(
                    job_type="diagnostics.echo", payload={"message": "e"}, idempotency_key="d"
                ),
            ],
            organization=org,
        )


def test_a_batch_over_the_rate_limit_or_quota_is_refused_and_writes_nothing(broker: Any) -> None:
    org = OrganizationFactory.create(max_submissions_per_minute=5)
    five = [JobRequest(job_type="diagnostics.echo", payload={"message": "x"})] * 5
    job_submit_many(requests=five, organization=org)

    with pytest.raises(RateLimited) as limited:
        job_submit_many(requests=five[:2], organization=org)
    assert (limited.value.retry_after_seconds or 0) >= 1
    with pytest.raises(RateLimited, match="split it into smaller batches"):
        job_submit_many(requests=five + five, organization=org)
    assert Job.objects.filter(organization=org).count() == 5

    capped = OrganizationFactory.create(max_submissions_per_minute=1_000, monthly_job_quota=7)
    job_submit_many(requests=five, organization=capped)
    with pytest.raises(QuotaExceeded):
        job_submit_many(requests=five[:3], organization=capped)
    job_submit_many(requests=five[:2], organization=capped)
    assert Job.objects.filter(organization=capped).count() == 7
    outbox_forget_flush()
    assert JobOutbox.objects.count() == 0


def test_a_batch_logs_one_line_naming_every_job_and_per_job_lines_at_debug(
    broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="jobs.services.submission"):
        batch = job_submit_many(
            requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "x"})] * 3
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.services.submission"]
    assert len(lines) == 1 and lines[0].startswith("Submitted 3 jobs in one batch")
    assert all(str(s.job.pk) in lines[0] for s in batch)

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="jobs.services.submission"):
        batch = job_submit_many(
            requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "y"})] * 2
        )
    per_job = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert [getattr(r, "job_id", None) for r in per_job] == [str(s.job.pk) for s in batch]


@pytest.fixture
def gc_collections() -> Iterator[list[int]]:
    """The generation of every collection of the cyclic garbage collector while the test runs."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)


def test_a_bulk_submission_runs_no_garbage_collection_and_leaves_the_collector_as_it_was(
    broker: Any, gc_collections: list[int]
) -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": f"{i}"}) for i in range(1000)
    ]
    assert gc.isenabled()
    gc_collections.clear()
    job_submit_many(requests=requests)
    # One collection already due as the call starts may run before the pause (without
    # the pause, a 1,000-job call runs about twenty).
    assert len(gc_collections) <= 1
    assert gc.isenabled()

    gc.disable()
    try:
        job_submit_many(requests=requests[:3])
        assert not gc.isenabled()
    finally:
        gc.enable()

    with pytest.raises(InvalidPayload):
        job_submit_many(requests=[JobRequest(job_type="diagnostics.echo", payload={})])
    assert gc.isenabled()
    assert Job.objects.count() == 1003
