"""Retention (``jobs_remove_old``) on real Postgres: what goes, what stays, how it is paced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.models import Job, JobAttempt, JobEvent, ProviderDelivery
from jobs.services.retention import jobs_remove_old
from tests.factories import JobFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _job(status: str, age_days: float, **extra: object) -> Job:
    created = NOW - timedelta(days=age_days)
    finished = None if status in ("queued", "running", "retrying") else created
    job: Job = JobFactory.create(status=status, created_at=created, finished_at=finished, **extra)
    return job


def test_an_expired_job_goes_with_its_attempts_events_and_deliveries_and_a_kept_one_keeps_its() -> (
    None
):
    old, kept = _job("succeeded", 31), _job("succeeded", 29)
    for job in (old, kept):
        JobAttempt.objects.create(job=job, number=1, worker_id="h:1:b", outcome="succeeded")
        JobEvent.objects.create(job=job, kind="retried", via="api")
        ProviderDelivery.objects.create(job=job, channel="email", status="sent")

    assert jobs_remove_old(now=NOW, pause_ms=0) == {"deleted_finished": 1, "deleted_failed": 0}

    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]
    assert list(JobAttempt.objects.values_list("job_id", flat=True)) == [kept.pk]
    assert list(JobEvent.objects.values_list("job_id", flat=True)) == [kept.pk]
    assert list(ProviderDelivery.objects.values_list("job_id", flat=True)) == [kept.pk]


def test_jobs_created_at_the_same_instant_across_many_batches_are_all_deleted() -> None:
    same = NOW - timedelta(days=40)
    Job.objects.bulk_create(
        [
            Job(
                job_type="diagnostics.echo",
                queue="default",
                status="succeeded",
                created_at=same,
                finished_at=same,
            )
            for _ in range(7)
        ]
    )
    kept = _job("succeeded", 1)
    batches: list[int] = []

    result = jobs_remove_old(
        now=NOW,
        batch_size=2,
        pause_ms=0,
        between_batches=lambda: batches.append(Job.objects.count()),
    )

    assert result == {"deleted_finished": 7, "deleted_failed": 0}
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]
    # One call after each full batch of 2: 8, 6, 4 then 2 rows left (the last batch is short).
    assert batches == [6, 4, 2]


def test_a_job_finished_after_the_cutoff_or_still_active_is_kept_whatever_its_age() -> None:
    late = _job("succeeded", 45)
    late.finished_at = NOW - timedelta(days=2)  # a long job, or one retried and finished lately
    late.save()
    active = [_job(s, 200) for s in ("queued", "running", "retrying")]
    young_failure, old_failure = _job("failed", 60), _job("failed", 91)

    assert jobs_remove_old(now=NOW, pause_ms=0) == {"deleted_finished": 0, "deleted_failed": 1}

    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {late.pk, young_failure.pk, *(j.pk for j in active)}
    assert old_failure.pk not in remaining


def test_a_cancel_between_batches_stops_the_cleanup_and_leaves_the_rest() -> None:
    for age in range(31, 36):
        _job("cancelled", age)

    class Stop(Exception):
        pass

    def cancel() -> None:
        raise Stop

    with pytest.raises(Stop):
        jobs_remove_old(now=NOW, batch_size=2, pause_ms=0, between_batches=cancel)

    # The oldest two went in the first batch; the three younger ones remain.
    ages = sorted((NOW - j.created_at).days for j in Job.objects.all())
    assert ages == [31, 32, 33]
