"""Bad submissions are refused with errors that name the field and say how to fix it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.errors import InvalidPayload, InvalidSubmission, PayloadTooLarge, UnknownJobType
from jobs.services import JobRequest, job_submit, job_submit_many


def test_an_unknown_job_type_is_refused_with_the_known_types() -> None:
    with pytest.raises(UnknownJobType, match=r"Unknown job type 'nope'.*diagnostics\.echo"):
        job_submit(job_type="nope", payload={})


def test_a_payload_that_is_not_json_serialisable_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="cannot be encoded as JSON") as info:
        job_submit(job_type="diagnostics.echo", payload={"message": object()})
    assert "payload" in info.value.errors


def test_a_payload_over_the_size_limit_is_refused(settings: object) -> None:
    settings.JOBS_MAX_PAYLOAD_BYTES = 100  # type: ignore[attr-defined]
    with pytest.raises(PayloadTooLarge, match="over JOBS_MAX_PAYLOAD_BYTES=100"):
        job_submit(job_type="diagnostics.echo", payload={"message": "x" * 200})


def test_the_default_payload_limit_is_256_kib() -> None:
    with pytest.raises(PayloadTooLarge, match="262144"):
        job_submit(job_type="diagnostics.echo", payload={"message": "x" * (256 * 1024)})


def test_missing_and_out_of_range_fields_are_named() -> None:
    with pytest.raises(InvalidPayload) as info:
        job_submit(job_type="diagnostics.echo", payload={"sleep_seconds": 99})
    assert set(info.value.errors) == {"message", "sleep_seconds"}


def test_unknown_payload_fields_are_named() -> None:
    with pytest.raises(InvalidPayload) as info:
        job_submit(job_type="diagnostics.echo", payload={"message": "m", "colour": "red"})
    assert set(info.value.errors) == {"colour"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": 11}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": True}, "priority"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
        ({"delay": timedelta(days=8)}, "delay_seconds"),
        ({"delay": timedelta(seconds=-1)}, "delay_seconds"),
    ],
)
def test_submission_options_out_of_range_name_their_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidSubmission) as info:
        job_submit(job_type="diagnostics.echo", payload={"message": "m"}, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_bulk_submission_names_the_index_of_the_first_bad_job() -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": "ok"}),
        JobRequest(job_type="diagnostics.echo", payload={"message": "ok"}),
        JobRequest(job_type="diagnostics.echo", payload={}),
    ]
    with pytest.raises(InvalidPayload) as info:
        job_submit_many(requests=requests)
    assert info.value.index == 2
