"""The outbox forgetter: sent submissions' outbox rows are deleted in the background, in batches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from jobs.models import JobOutbox
from jobs.services import JobRequest, job_submit, job_submit_many
from jobs.services.outbox import outbox_forget_flush, outbox_forgetter

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: A linger far longer than any test: the rows wait for the flush.
LONG_LINGER = {"JOBS_OUTBOX_DELETE_LINGER_MS": 600_000}


def test_a_sent_submissions_outbox_row_is_deleted_off_the_callers_path(
    broker: Any, wait_for: Callable[..., Any]
) -> None:
    with override_settings(**LONG_LINGER):
        job = job_submit(job_type="tests.count", payload={"key": "f"}).job
        # The caller has its job and Redis its message; the row waits for the forgetter.
        assert broker.client.llen(f"{broker.namespace}:default") == 1
        assert JobOutbox.objects.get().job_ids == [str(job.pk)]
    with override_settings(JOBS_OUTBOX_DELETE_LINGER_MS=0):
        job_submit(job_type="tests.count", payload={"key": "g"})
        wait_for(lambda: not JobOutbox.objects.exists())


def test_the_forgetter_deletes_the_rows_of_many_sends_in_one_statement(broker: Any) -> None:
    forgetter = outbox_forgetter()
    before, deleted_before = forgetter.batches, forgetter.deleted
    with override_settings(**LONG_LINGER):

        def submit(i: int) -> None:
            job_submit(job_type="tests.count", payload={"key": f"t{i}"})
            connection.close()

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job_submit_many(requests=[JobRequest(job_type="tests.count", payload={"key": "b"})] * 3)
        assert JobOutbox.objects.count() == 5

        outbox_forget_flush()

    assert not JobOutbox.objects.exists()
    assert forgetter.deleted - deleted_before == 5
    assert forgetter.batches - before == 1
    assert forgetter.pending() == 0


def test_a_flush_deletes_what_is_pending_and_the_forgetter_starts_again_when_used(
    broker: Any, wait_for: Callable[..., Any]
) -> None:
    with override_settings(**LONG_LINGER):
        job_submit(job_type="tests.count", payload={"key": "one"})
        outbox_forget_flush()
        assert not JobOutbox.objects.exists()
        job_submit(job_type="tests.count", payload={"key": "two"})
        assert JobOutbox.objects.count() == 1
    outbox_forget_flush()
    assert not JobOutbox.objects.exists()
