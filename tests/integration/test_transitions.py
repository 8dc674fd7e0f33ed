"""The forward-only transitions of the ledger (one path: Postgres)."""

from __future__ import annotations

import json

import pytest

from jobs.models import AttemptOutcome, JobStatus
from jobs.services import job_cancel, job_submit, transitions
from jobs.services.recovery_ledger import WORKER_LOST, job_attempts_mark_lost
from jobs.services.transitions import (
    AttemptEnd,
    StartVerdict,
    job_attempt_finish,
    job_attempt_start,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_job_moves_through_start_retry_and_success(broker: object) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "m"}).job

    first = job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")
    assert first.verdict is StartVerdict.RUN and first.attempt == 1
    retrying = AttemptEnd(
        status=JobStatus.RETRYING,
        outcome=AttemptOutcome.FAILED,
        error_type="Boom",
        error_message="boom",
    )
    assert job_attempt_finish(job_id=str(job.pk), attempt=1, end=retrying)
    job.refresh_from_db()
    assert (job.status, job.error_type) == (JobStatus.RETRYING, "Boom")

    second = job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")
    assert second.attempt == 2
    done = AttemptEnd(
        status=JobStatus.SUCCEEDED,
        outcome=AttemptOutcome.SUCCEEDED,
        result_json=json.dumps({"ok": True}),
    )
    assert job_attempt_finish(job_id=str(job.pk), attempt=2, end=done)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.result, job.progress) == (
        JobStatus.SUCCEEDED,
        2,
        {"ok": True},
        100,
    )
    assert list(job.attempt_set.values_list("number", "outcome")) == [
        (1, "failed"),
        (2, "succeeded"),
    ]


def test_a_late_event_from_an_older_attempt_changes_only_its_attempt(broker: object) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "m"}).job
    job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")
    # A second delivery while attempt 1 runs is a duplicate: it does not claim the job.
    assert job_attempt_start(job_id=str(job.pk), worker_id="h:2:b").verdict is StartVerdict.RUNNING
    # The worker of attempt 1 vanished; recovery marks it lost, and a redelivery claims attempt 2.
    job_attempts_mark_lost(worker_ids=["h:1:a"], error_type=WORKER_LOST, error_message="")
    job_attempt_start(job_id=str(job.pk), worker_id="h:2:b")

    late = AttemptEnd(status=JobStatus.FAILED, outcome=AttemptOutcome.FAILED)
    assert not job_attempt_finish(job_id=str(job.pk), attempt=1, end=late)

    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 2)
    assert list(job.attempt_set.values_list("number", "outcome")) == [(1, "lost"), (2, "")]


def test_a_finished_job_is_not_claimed_again(broker: object) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "m"}).job
    job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")
    job_attempt_finish(
        job_id=str(job.pk),
        attempt=1,
        end=AttemptEnd(status=JobStatus.SUCCEEDED, outcome=AttemptOutcome.SUCCEEDED),
    )

    assert job_attempt_start(job_id=str(job.pk), worker_id="h:1:a").verdict is StartVerdict.FINISHED
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_pending_cancel_cancels_instead_of_starting(broker: object) -> None:
    job = job_submit(job_type="diagnostics.echo", payload={"message": "m"}).job
    job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")
    job_cancel(job=job)  # running: only a request
    job_attempt_finish(
        job_id=str(job.pk),
        attempt=1,
        end=AttemptEnd(status=JobStatus.RETRYING, outcome=AttemptOutcome.FAILED),
    )

    decision = job_attempt_start(job_id=str(job.pk), worker_id="h:1:a")

    assert decision.verdict is StartVerdict.CANCELLED
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_a_message_without_a_row_is_reported_missing(broker: object) -> None:
    decision = job_attempt_start(job_id="00000000-0000-0000-0000-000000000001", worker_id="h:1:a")
    assert decision.verdict is StartVerdict.MISSING


@pytest.mark.parametrize("prepared", [True, False])
def test_the_batch_statement_is_prepared_only_when_the_setting_allows_it(
    broker: object, prepared: bool
) -> None:
    from django.db import connection
    from django.test import override_settings

    job = job_submit(job_type="diagnostics.echo", payload={"message": "p"}).job
    connection.close()  # a fresh session: nothing prepared yet
    with override_settings(JOBS_LEDGER_PREPARED_STATEMENTS=prepared):
        _, claimed = transitions.job_transitions_write(starts=[(str(job.pk), "h:1:p")])
        assert claimed == {str(job.pk): 1}
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            count = cursor.fetchone()[0]
    assert (count > 0) is prepared
