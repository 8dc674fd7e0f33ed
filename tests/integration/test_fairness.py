"""Fairness between organizations: rate limits, quotas, inactive orgs and concurrency caps."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from jobs.errors import OrganizationInactive, QuotaExceeded, RateLimited
from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import JobRequest, job_cancel, job_retry, job_submit, job_submit_many
from jobs.services.fairness import organization_limits_forget
from jobs.transport.limits import concurrency_running
from tests.actors import release
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    organization_limits_forget()
    yield
    organization_limits_forget()


def _max_overlap(intervals: list[tuple[Any, Any]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_an_organization_over_its_concurrency_cap_waits_without_starving_others(
    broker: Any, wait_for: Any, settings: Any
) -> None:
    import dramatiq

    settings.JOBS_FAIRNESS_DEFER_MS = 300
    a = OrganizationFactory.create(slug="org-a", max_concurrent_jobs=2)
    b = OrganizationFactory.create(slug="org-b")
    # A's jobs run until the test lets them go: B's must all run while A's first two
    # still hold A's cap and the other 18 wait, however slow the machine.
    a_jobs = job_submit_many(
        requests=[JobRequest(job_type="tests.hold", payload={"key": "org-a"}) for _ in range(20)],
        organization=a,
    )
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=50)
    worker.start()
    try:
        wait_for(lambda: JobAttempt.objects.filter(job__organization=a).count() >= 2)
        b_jobs = job_submit_many(
            requests=[
                JobRequest(job_type="diagnostics.echo", payload={"message": f"b{i}"})
                for i in range(5)
            ],
            organization=b,
        )
        wait_for(
            lambda: Job.objects.filter(organization=b, status=JobStatus.SUCCEEDED).count() == 5
        )
        assert JobAttempt.objects.filter(job__organization=a).count() == 2, "A is at its cap"
        assert not Job.objects.filter(organization=a, status=JobStatus.SUCCEEDED).exists()
        release("org-a")
        wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 25, timeout=60)
    finally:
        release("org-a")
        worker.stop()

    a_attempts = list(
        JobAttempt.objects.filter(job__organization=a).values_list("started_at", "finished_at")
    )
    assert _max_overlap(a_attempts) <= 2
    assert len(a_attempts) == 20, "no A job ran twice or failed and retried"
    b_starts = [
        start
        for start in Job.objects.filter(pk__in=[s.job.pk for s in b_jobs]).values_list(
            "started_at", flat=True
        )
        if start is not None
    ]
    assert len(b_starts) == 5
    a_finishes = [finished for _, finished in a_attempts if finished is not None]
    assert len(a_finishes) == 20
    assert max(b_starts) < min(a_finishes), "all of B started before any of A finished"
    for s in a_jobs:
        s.job.refresh_from_db()
        assert s.job.status == JobStatus.SUCCEEDED
        assert s.job.attempts == 1
    assert not JobAttempt.objects.exclude(outcome=AttemptOutcome.SUCCEEDED).exists()
    # Slots are freed by the worker's releaser thread just after each job.
    wait_for(lambda: concurrency_running(organization_id=a.pk) == 0)


def test_the_submission_rate_limit_is_per_organization_and_says_when_to_retry(broker: Any) -> None:
    a = OrganizationFactory.create(max_submissions_per_minute=5)
    b = OrganizationFactory.create(max_submissions_per_minute=5)
    for i in range(5):
        job_submit(job_type="diagnostics.echo", payload={"message": str(i)}, organization=a)

    with pytest.raises(RateLimited) as info:
        job_submit(job_type="diagnostics.echo", payload={"message": "six"}, organization=a)

    assert 1 <= (info.value.retry_after_seconds or 0) <= 12
    assert Job.objects.filter(organization=a).count() == 5, "the refused job was not created"
    job_submit(job_type="diagnostics.echo", payload={"message": "b"}, organization=b)


def test_a_batch_counts_every_job_against_the_rate_limit(broker: Any) -> None:
    org = OrganizationFactory.create(max_submissions_per_minute=10)
    job_submit_many(
        requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "x"})] * 8,
        organization=org,
    )
    with pytest.raises(RateLimited):
        job_submit_many(
            requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "y"})] * 3,
            organization=org,
        )
    assert Job.objects.filter(organization=org).count() == 8


def test_the_monthly_quota_counts_jobs_already_in_the_ledger(broker: Any) -> None:
    org = OrganizationFactory.create(monthly_job_quota=3)
    Job.objects.bulk_create(
        [Job(organization=org, job_type="diagnostics.echo", queue="default") for _ in range(2)]
    )
    job_submit(job_type="diagnostics.echo", payload={"message": "third"}, organization=org)

    with pytest.raises(QuotaExceeded) as info:
        job_submit(job_type="diagnostics.echo", payload={"message": "fourth"}, organization=org)

    assert info.value.code == "quota_exceeded"
    assert (info.value.retry_after_seconds or 0) > 0
    assert Job.objects.filter(organization=org).count() == 3


def test_an_inactive_organization_cannot_submit(broker: Any) -> None:
    org = OrganizationFactory.create(is_active=False)
    with pytest.raises(OrganizationInactive, match="inactive"):
        job_submit(job_type="diagnostics.echo", payload={"message": "no"}, organization=org)
    assert not Job.objects.exists()


def test_queued_jobs_of_an_organization_deactivated_later_are_cancelled_at_pickup(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    worker.pause()
    org = OrganizationFactory.create()
    job = job_submit(job_type="tests.count", payload={"key": "inactive"}, organization=org).job
    org.is_active = False
    org.save()
    organization_limits_forget()
    worker.resume()

    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED)
    job.refresh_from_db()
    assert job.error_type == "OrganizationInactive"
    assert job.attempts == 0


def test_a_job_type_rate_limit_spreads_starts_without_using_retries(
    broker: Any, worker: Any, wait_for: Any
) -> None:
    jobs = [job_submit(job_type="tests.limited", payload={"n": i}).job for i in range(3)]

    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 3, timeout=20)

    starts = sorted(
        start
        for start in Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list(
            "started_at", flat=True
        )
        if start is not None
    )
    assert len(starts) == 3
    assert starts[2] - starts[0] >= timedelta(seconds=1.5), "about one start per second"
    assert all(j.attempts == 1 for j in Job.objects.filter(pk__in=[j.pk for j in jobs]))


def _used_up_quota_with_a_cancelled_job(broker: Any) -> Job:
    org = OrganizationFactory.create(monthly_job_quota=1)
    job = job_submit(job_type="diagnostics.echo", payload={"message": "m"}, organization=org).job
    job_cancel(job=job)
    return job


def test_a_retry_that_enforces_limits_counts_against_the_quota(broker: Any) -> None:
    job = _used_up_quota_with_a_cancelled_job(broker)

    with pytest.raises(QuotaExceeded):
        job_retry(job=job, enforce_limits=True, via="api")

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_operators_retry_in_the_admin_or_the_cli_without_the_tenants_limits(
    broker: Any,
) -> None:
    by_admin = _used_up_quota_with_a_cancelled_job(broker)
    job_retry(job=by_admin, enforce_limits=False, via="admin")
    assert by_admin.status == JobStatus.QUEUED

    by_cli = JobFactory.create(organization=by_admin.organization, status=JobStatus.CANCELLED)
    call_command("jobs", "retry", str(by_cli.pk), stdout=StringIO())
    by_cli.refresh_from_db()
    assert by_cli.status == JobStatus.QUEUED
