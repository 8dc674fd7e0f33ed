"""Admission read after the INSERT: a refused submission leaves nothing, wherever it ran."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from jobs.errors import QuotaExceeded, RateLimited
from jobs.models import Job, JobOutbox
from jobs.queues import redis_queue_name
from jobs.services import JobRequest, job_submit, job_submit_many
from jobs.services.outbox import outbox_forget_flush
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _ready(broker: Any) -> int:
    return int(broker.client.llen(f"{broker.namespace}:{redis_queue_name('default', 5)}"))


def test_a_refusal_inside_the_callers_transaction_leaves_no_row_and_the_rest_commits(
    broker: Any,
) -> None:
    org = OrganizationFactory.create(max_submissions_per_minute=2)
    with transaction.atomic():
        kept = [
            job_submit(job_type="diagnostics.echo", payload={"message": str(i)}, organization=org)
            for i in range(2)
        ]
        with pytest.raises(RateLimited):
            job_submit(job_type="diagnostics.echo", payload={"message": "3"}, organization=org)
        with pytest.raises(RateLimited):
            job_submit_many(
                requests=[JobRequest(job_type="diagnostics.echo", payload={"message": "b"})],
                organization=org,
            )
    outbox_forget_flush()

    assert set(Job.objects.filter(organization=org).values_list("pk", flat=True)) == {
        s.job.pk for s in kept
    }
    assert not JobOutbox.objects.exists()
    assert _ready(broker) == 2


def test_a_refusal_outside_a_transaction_deletes_the_rows_it_wrote(broker: Any) -> None:
    org = OrganizationFactory.create(monthly_job_quota=1)
    job_submit(job_type="diagnostics.echo", payload={"message": "1"}, organization=org)

    with pytest.raises(QuotaExceeded):
        job_submit(job_type="diagnostics.echo", payload={"message": "2"}, organization=org)
    with pytest.raises(QuotaExceeded):
        job_submit(
            job_type="diagnostics.echo",
            payload={"message": "3"},
            organization=org,
            idempotency_key="k",
        )
    outbox_forget_flush()

    assert Job.objects.filter(organization=org).count() == 1
    assert not JobOutbox.objects.exists()
    assert _ready(broker) == 1


def test_a_quota_seeded_from_the_ledger_does_not_count_the_submission_being_admitted(
    broker: Any,
) -> None:
    org = OrganizationFactory.create(monthly_job_quota=2)
    job_submit(job_type="diagnostics.echo", payload={"message": "1"}, organization=org)
    broker.client.flushdb()  # the counter is gone: the next admission seeds it from the ledger

    job_submit(job_type="diagnostics.echo", payload={"message": "2"}, organization=org)
    with pytest.raises(QuotaExceeded):
        job_submit(job_type="diagnostics.echo", payload={"message": "3"}, organization=org)

    assert Job.objects.filter(organization=org).count() == 2
