"""A claim that committed while its claimant saw the database fail is claimed again, once.

The claimant counts such a claim as failed and sends the message again naming
itself (``ledger_claimant``). The job then reads ``running`` under a live worker
that will never run it; the new delivery must run it, exactly once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from jobs.services import job_message, job_submit
from jobs.services.dispatch import jobs_send
from jobs.services.transitions import CLAIM_REPLY_LOST, StartVerdict, job_attempt_start
from tests.actors import side_effects

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLAIMANT = "host-a:4242:lost-claim"


def _claimed_unheard(broker: Any, key: str) -> Job:
    """A queued job whose claim by CLAIMANT committed, with its message gone from Redis."""
    job = job_submit(job_type="tests.count", payload={"key": key}).job
    assert job_attempt_start(job_id=str(job.pk), worker_id=CLAIMANT).verdict is StartVerdict.RUN
    broker.flush_all()  # the claimant acknowledged the delivery it thought had failed
    return job


def _redeliver(job: Job, claimant: str, failed_at: float) -> None:
    message = job_message(job).copy(
        options={"ledger_claimant": claimant, "ledger_claim_failed_at": failed_at}
    )
    assert jobs_send([(message, None)])


def test_the_delivery_sent_after_an_unheard_claim_runs_the_job_once(
    broker: Any, request: pytest.FixtureRequest, wait_for: Any
) -> None:
    job = _claimed_unheard(broker, "unheard")
    _redeliver(job, CLAIMANT, time.time())
    request.getfixturevalue("worker")

    wait_for(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED)
    assert side_effects().get("tests:runs:unheard") == b"1"
    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [
        (1, AttemptOutcome.LOST),
        (2, AttemptOutcome.SUCCEEDED),
    ]
    assert attempts[0].error_type == CLAIM_REPLY_LOST
    assert attempts[0].worker_id == CLAIMANT


@pytest.mark.parametrize(
    ("claimant", "failed_ago"),
    [("another-worker:1:x", 0.0), (CLAIMANT, 3_600.0)],
    ids=["not-the-attempts-worker", "attempt-began-after-the-failure"],
)
def test_a_running_attempt_that_is_not_the_unheard_claim_is_left_alone(
    broker: Any,
    request: pytest.FixtureRequest,
    wait_for: Any,
    claimant: str,
    failed_ago: float,
) -> None:
    job = _claimed_unheard(broker, "other")
    _redeliver(job, claimant, time.time() - failed_ago)
    worker = request.getfixturevalue("worker")

    broker.join("default", timeout=30_000)
    worker.join()

    assert side_effects().get("tests:runs:other") is None
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    (attempt,) = JobAttempt.objects.filter(job=job)
    assert attempt.finished_at is None and attempt.worker_id == CLAIMANT
