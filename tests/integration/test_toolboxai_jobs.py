"""The ToolBoxAI job types, end to end through a real worker against local provider servers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.errors import InvalidPayload
from jobs.models import DeliveryStatus, Job, JobStatus, ProviderDelivery
from jobs.registry import get_job_type
from jobs.services import job_message, job_submit
from jobs.services.dispatch import jobs_send
from jobs.transport.events import channel_name
from tests.fakes.fixtures import OPENAI_TEST_KEY, ROBLOX_TEST_KEY, SENDGRID_TEST_KEY
from tests.fakes.openai_server import openai_error
from tests.fakes.sendgrid_server import sendgrid_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(job: Job) -> bool:
    job.refresh_from_db()
    return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _assert_secret_absent(secret: str, caplog: pytest.LogCaptureFixture, job: Job) -> None:
    """The key appears nowhere: not in any log record, the row, its result or its attempts."""
    assert caplog.records, "logs were captured"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
    job.refresh_from_db()
    stored = " ".join(
        [
            job.error_message,
            job.error_traceback,
            json.dumps(job.result),
            json.dumps(job.payload),
            *job.attempt_set.values_list("error_message", flat=True),
        ]
    )
    assert secret not in stored


def _result(job: Job) -> dict[str, Any]:
    assert isinstance(job.result, dict), job.result
    return job.result


def _attempt_gap_seconds(job: Job) -> float:
    first, second = job.attempt_set.order_by("number")[:2]
    assert first.finished_at is not None
    return (second.started_at - first.finished_at).total_seconds()


# --- content.generate_lesson ------------------------------------------------------------


def test_a_lesson_streams_each_chunk_to_the_event_stream_and_stores_content_and_usage(
    broker: Any, worker: Any, wait_for: Any, openai_server: Any
) -> None:
    pubsub = broker.client.pubsub()
    pubsub.psubscribe(channel_name("*"))
    job = job_submit(
        job_type="content.generate_lesson",
        payload={"topic": "photosynthesis", "grade_level": "5th grade"},
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert _result(job)["content"] == openai_server.reply
    assert _result(job)["model"] == "fake-gpt"
    assert _result(job)["finish_reason"] == "stop"
    assert _result(job)["usage"]["completion_tokens"] == len(openai_server.chunks())
    assert _result(job)["usage"]["total_tokens"] > _result(job)["usage"]["completion_tokens"]
    request = openai_server.requests[0].json()
    assert request["stream"] is True
    assert request["model"] == "fake-gpt"
    assert "photosynthesis" in request["messages"][-1]["content"]
    assert "5th grade" in request["messages"][-1]["content"]

    partials = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage" and message["channel"].decode() == channel_name(
            str(job.id)
        ):
            event = json.loads(message["data"])
            assert event["event"] == "partial"
            partials.append(event["data"]["text"])
    pubsub.close()
    assert partials == openai_server.chunks()


def test_a_lesson_rate_limited_with_429_waits_for_retry_after_then_succeeds_without_leaking_the_key(
    worker: Any, wait_for: Any, openai_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.fail_next(
        429,
        body=openai_error("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
        headers={"Retry-After": "2"},
    )
    job = job_submit(
        job_type="content.generate_lesson", payload={"topic": "fractions", "grade_level": "4"}
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 2
    first = job.attempt_set.get(number=1)
    assert first.error_type == "Retry"
    assert "429" in first.error_message
    assert 1.8 <= _attempt_gap_seconds(job) < 15, "the retry waited for Retry-After (2 s)"
    assert len(openai_server.requests) == 2
    _assert_secret_absent(OPENAI_TEST_KEY, caplog, job)


def test_a_lesson_refused_with_400_fails_at_once_without_retry_or_leaking_the_key(
    worker: Any, wait_for: Any, openai_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.fail_next(
        400,
        body=openai_error("The model `fake-gpt` does not exist.", "invalid_request_error"),
    )
    job = job_submit(
        job_type="content.generate_lesson", payload={"topic": "volcanoes", "grade_level": "6"}
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert job.error_type == "PermanentJobError"
    assert "(400)" in job.error_message
    assert "does not exist" in job.error_message
    assert len(openai_server.requests) == 1
    _assert_secret_absent(OPENAI_TEST_KEY, caplog, job)


def test_a_lesson_without_an_api_key_fails_at_once_with_a_clear_error(
    worker: Any, wait_for: Any, openai_server: Any, settings: Any
) -> None:
    settings.OPENAI_API_KEY = ""
    job = job_submit(
        job_type="content.generate_lesson", payload={"topic": "tides", "grade_level": "3"}
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert "OPENAI_API_KEY is not set" in job.error_message
    assert openai_server.requests == []


# --- email.send_transactional ------------------------------------------------------------


def test_an_email_goes_through_sendgrid_and_records_its_message_id(
    worker: Any, wait_for: Any, sendgrid_server: Any
) -> None:
    job = job_submit(
        job_type="email.send_transactional",
        payload={
            "to_email": "teacher@school.example",
            "subject": "Your lesson is ready",
            "html_content": "<p>Open <b>ToolBoxAI</b> to see it.</p>",
        },
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    [mail] = sendgrid_server.mails()
    assert mail["personalizations"][0]["to"] == [{"email": "teacher@school.example"}]
    assert mail["subject"] == "Your lesson is ready"
    assert mail["content"][0]["value"] == "<p>Open <b>ToolBoxAI</b> to see it.</p>"
    assert mail["custom_args"] == {"job_id": str(job.id)}
    [message_id] = sendgrid_server.message_ids
    assert job.result == {"provider": "sendgrid", "message_id": message_id, "already_sent": False}
    delivery = ProviderDelivery.objects.get(job=job)
    assert (delivery.status, delivery.provider_message_id) == (DeliveryStatus.SENT, message_id)


def test_an_email_goes_through_smtp_when_no_sendgrid_key_is_set(
    worker: Any, wait_for: Any, smtp_server: Any
) -> None:
    job = job_submit(
        job_type="email.send_transactional",
        payload={
            "to_email": "parent@home.example",
            "subject": "Report card",
            "html_content": "<h1>Well done</h1>",
        },
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    [(recipients, message)] = smtp_server.messages
    assert recipients == ["parent@home.example"]
    assert message["Subject"] == "Report card"
    assert message["Message-ID"] == _result(job)["message_id"]
    assert _result(job)["provider"] == "smtp"
    html = [p for p in message.walk() if p.get_content_type() == "text/html"]
    assert html and "<h1>Well done</h1>" in html[0].get_payload(decode=True).decode()


def test_a_redelivered_email_job_is_not_sent_twice(
    worker: Any, wait_for: Any, sendgrid_server: Any
) -> None:
    job = job_submit(
        job_type="email.send_transactional",
        payload={"to_email": "a@b.example", "subject": "Once", "html_content": "<p>1</p>"},
    ).job
    wait_for(lambda: _finished(job), timeout=30)
    assert len(sendgrid_server.mails()) == 1
    first_message_id = _result(job)["message_id"]

    # The worker died after SendGrid accepted the mail but before the ledger recorded
    # success: the recovery loop marks the attempt lost, the job `retrying`, and Redis
    # delivers the message again.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RETRYING, finished_at=None)
    jobs_send([(job_message(job), None)])
    wait_for(lambda: _finished(job) and job.attempts == 2, timeout=30)

    assert job.status == JobStatus.SUCCEEDED
    assert len(sendgrid_server.mails()) == 1, "no second request reached SendGrid"
    assert job.result == {
        "provider": "sendgrid",
        "message_id": first_message_id,
        "already_sent": True,
    }


def test_an_email_interrupted_mid_send_is_not_repeated_on_redelivery(
    worker: Any, wait_for: Any, sendgrid_server: Any
) -> None:
    job = job_submit(
        job_type="email.send_transactional",
        payload={"to_email": "c@d.example", "subject": "Maybe", "html_content": "<p>?</p>"},
        delay=timedelta(seconds=1),
    ).job
    # A previous attempt claimed the send and died before SendGrid answered.
    ProviderDelivery.objects.create(job=job, channel="email", provider="sendgrid", attempt=1)

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert "may have been delivered" in job.error_message
    assert sendgrid_server.mails() == []


def test_an_invalid_email_address_is_refused_at_submission() -> None:
    with pytest.raises(InvalidPayload) as caught:
        job_submit(
            job_type="email.send_transactional",
            payload={"to_email": "not-an-address", "subject": "x", "html_content": "y"},
        )
    assert "to_email" in caught.value.errors
    assert not Job.objects.exists()


def test_the_email_type_declares_the_global_rate_limit_read_from_settings_at_run_time(
    settings: Any,
) -> None:
    limit = get_job_type("email.send_transactional").rate_limit_per_minute
    assert callable(limit)
    assert limit() == 100
    settings.EMAIL_RATE_LIMIT_PER_MINUTE = 7
    assert limit() == 7


def test_sendgrid_429_defers_and_retries_and_400_fails_without_leaking_the_key(
    worker: Any, wait_for: Any, sendgrid_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sendgrid_server.fail_next(
        429, body=sendgrid_error("too many requests"), headers={"Retry-After": "1"}
    )
    limited = job_submit(
        job_type="email.send_transactional",
        payload={"to_email": "e@f.example", "subject": "Later", "html_content": "<p>2</p>"},
    ).job
    wait_for(lambda: _finished(limited), timeout=30)

    sendgrid_server.fail_next(400, body=sendgrid_error("The from address is not verified.", "from"))
    refused = job_submit(
        job_type="email.send_transactional",
        payload={"to_email": "g@h.example", "subject": "Never", "html_content": "<p>3</p>"},
    ).job
    wait_for(lambda: _finished(refused), timeout=30)

    assert limited.status == JobStatus.SUCCEEDED
    assert limited.attempts == 2
    assert limited.attempt_set.get(number=1).error_type == "Retry"
    assert _attempt_gap_seconds(limited) >= 0.9
    assert refused.status == JobStatus.FAILED
    assert refused.attempts == 1
    assert "not verified" in refused.error_message
    assert not ProviderDelivery.objects.filter(job=refused).exists()
    _assert_secret_absent(SENDGRID_TEST_KEY, caplog, limited)
    _assert_secret_absent(SENDGRID_TEST_KEY, caplog, refused)


# --- roblox.publish_message -------------------------------------------------------------


def test_a_roblox_message_is_published_through_open_cloud_with_the_api_key(
    worker: Any, wait_for: Any, roblox_server: Any
) -> None:
    job = job_submit(
        job_type="roblox.publish_message",
        payload={"universe_id": 4242, "topic": "lesson-ready", "message": '{"lesson": 7}'},
    ).job

    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert roblox_server.published == [(4242, "lesson-ready", '{"lesson": 7}')]
    request = roblox_server.requests[0]
    assert request.path == "/messaging-service/v1/universes/4242/topics/lesson-ready"
    assert request.headers["x-api-key"] == ROBLOX_TEST_KEY
    assert job.result == {"universe_id": 4242, "topic": "lesson-ready", "already_published": False}


def test_roblox_429_and_5xx_back_off_and_a_4xx_fails_permanently_without_leaking_the_key(
    worker: Any, wait_for: Any, roblox_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    roblox_server.fail_next(429, headers={"Retry-After": "1"})
    roblox_server.fail_next(503, body={"code": "UNAVAILABLE", "message": "try later"})
    flaky = job_submit(
        job_type="roblox.publish_message",
        payload={"universe_id": 1, "topic": "sync", "message": "hello"},
    ).job
    wait_for(lambda: _finished(flaky), timeout=40)

    roblox_server.fail_next(403, body={"code": "PERMISSION_DENIED", "message": "no scope"})
    denied = job_submit(
        job_type="roblox.publish_message",
        payload={"universe_id": 2, "topic": "sync", "message": "nope"},
    ).job
    wait_for(lambda: _finished(denied), timeout=30)

    assert flaky.status == JobStatus.SUCCEEDED
    assert flaky.attempts == 3
    outcomes = list(flaky.attempt_set.order_by("number").values_list("error_type", flat=True))
    assert outcomes == ["Retry", "ProviderUnavailable", ""]
    assert roblox_server.published == [(1, "sync", "hello")]
    assert denied.status == JobStatus.FAILED
    assert denied.attempts == 1
    assert "(403)" in denied.error_message
    _assert_secret_absent(ROBLOX_TEST_KEY, caplog, flaky)
    _assert_secret_absent(ROBLOX_TEST_KEY, caplog, denied)


# --- periodic job types through the worker ------------------------------------------------


def test_the_daily_report_job_writes_one_report_per_organization_of_the_day(
    worker: Any, wait_for: Any
) -> None:
    from jobs.models import DailyReport
    from tests.factories import OrganizationFactory

    org_a, org_b = (
        OrganizationFactory.create(slug="report-a"),
        OrganizationFactory.create(slug="report-b"),
    )
    day = datetime(2026, 3, 8, tzinfo=UTC)  # a Sunday
    start = day + timedelta(hours=10)
    rows = []
    for seconds, status in [(1, "succeeded"), (2, "succeeded"), (3, "succeeded"), (10, "failed")]:
        rows.append(
            Job(
                organization=org_a,
                job_type="diagnostics.echo",
                queue="default",
                status=status,
                created_at=start,
                started_at=start,
                finished_at=start + timedelta(seconds=seconds),
            )
        )
    rows.append(
        Job(
            organization=org_a, job_type="email.send_transactional", queue="email", created_at=start
        )
    )
    rows.append(
        Job(organization=org_b, job_type="diagnostics.echo", queue="default", created_at=start)
    )
    rows.append(  # the next day: not in the report
        Job(
            organization=org_b,
            job_type="diagnostics.echo",
            queue="default",
            created_at=day + timedelta(days=1, minutes=1),
        )
    )
    Job.objects.bulk_create(rows)

    job = job_submit(job_type="analytics.generate_daily_report", payload={"day": "2026-03-08"}).job
    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.result == {"day": "2026-03-08", "organizations": 2}
    report_a = DailyReport.objects.get(organization=org_a, day=day.date())
    assert report_a.total_jobs == 5
    assert report_a.by_status == {"failed": 1, "queued": 1, "succeeded": 3}
    assert report_a.by_type == {"diagnostics.echo": 4, "email.send_transactional": 1}
    assert report_a.p50_duration_ms == 2500  # percentile_cont of 1, 2, 3, 10 s
    assert report_a.p95_duration_ms == 8950
    assert report_a.failure_rate == 0.25
    report_b = DailyReport.objects.get(organization=org_b, day=day.date())
    assert (report_b.total_jobs, report_b.failure_rate, report_b.p50_duration_ms) == (1, None, None)


def test_the_cleanup_job_removes_old_history_by_retention_and_keeps_the_rest(
    worker: Any, wait_for: Any, settings: Any
) -> None:
    settings.JOBS_CLEANUP_BATCH_SIZE = 2
    now = datetime.now(UTC)

    def make(status: str, age_days: int) -> Job:
        created = now - timedelta(days=age_days)
        return Job.objects.create(
            job_type="diagnostics.echo",
            queue="default",
            status=status,
            created_at=created,
            finished_at=None if status in ("queued", "running") else created,
        )

    old_done = [make("succeeded", 31) for _ in range(3)] + [make("cancelled", 40)]
    old_failed = [make("failed", 91), make("failed", 100)]
    kept = [make("succeeded", 29), make("failed", 60), make("queued", 200), make("running", 45)]
    for j in old_done[:1]:
        j.attempt_set.create(number=1, worker_id="h:1:b")

    job = job_submit(job_type="cleanup.remove_old_jobs").job
    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.result == {"deleted_finished": 4, "deleted_failed": 2}
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert {j.pk for j in kept} | {job.pk} == remaining
    assert not any(j.pk in remaining for j in old_done + old_failed)


def test_the_usage_job_records_monthly_usage_and_flags_80_and_100_percent(
    worker: Any, wait_for: Any
) -> None:
    from tenants.models import OrganizationUsage, UsageFlag
    from tests.factories import OrganizationFactory

    calm = OrganizationFactory.create(slug="calm", monthly_job_quota=100)
    busy = OrganizationFactory.create(slug="busy", monthly_job_quota=10)
    over = OrganizationFactory.create(slug="over", monthly_job_quota=3)
    free = OrganizationFactory.create(slug="free", monthly_job_quota=None)
    now = datetime.now(UTC)
    for org, count in [(calm, 5), (busy, 8), (over, 3), (free, 50)]:
        Job.objects.bulk_create(
            [
                Job(organization=org, job_type="diagnostics.echo", queue="default", created_at=now)
                for _ in range(count)
            ]
        )

    job = job_submit(job_type="tenant.check_usage_limits").job
    wait_for(lambda: _finished(job), timeout=30)

    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert _result(job)["at_80_percent"] == ["busy"]
    assert _result(job)["at_100_percent"] == ["over"]
    month = now.date().replace(day=1)
    usage = {u.organization.slug: u for u in OrganizationUsage.objects.filter(month=month)}
    assert {slug: (u.jobs_submitted, u.flag) for slug, u in usage.items()} == {
        "calm": (5, UsageFlag.NONE),
        "busy": (8, UsageFlag.WARNING),
        "over": (3, UsageFlag.EXCEEDED),
        "free": (50, UsageFlag.NONE),
    }
    assert usage["busy"].flagged_at is not None
    assert usage["busy"].percent_of_quota == 80.0
