"""Bulk submission validates every payload on its own, even with one serializer per job type."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.errors import InvalidPayload
from jobs.models import Job
from jobs.services import JobRequest, job_submit_many

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
