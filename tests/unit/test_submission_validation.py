"""Bad submissions are refused with errors that name the field and say how to fix it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from jobs.errors import InvalidPayload, InvalidSubmission, PayloadTooLarge, UnknownJobType
from jobs.registry import all_job_types
from jobs.services import JobRequest, job_submit, job_submit_many


def test_an_unknown_job_type_is_refused_with_the_known_types() -> None:
    with pytest.raises(UnknownJobType, match=r"Unknown job type 'nope'.*diagnostics\.echo"):
        job_submit(job_type="nope", payload={})


def test_an_unknown_job_type_lists_only_the_public_types() -> None:
    internal = [jt.name for jt in all_job_types() if not jt.public]
    assert "django_tasks.run" in internal

    with pytest.raises(UnknownJobType) as info:
        job_submit(job_type="nope", payload={})

    assert [name for name in internal if name in str(info.value)] == []


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
        ({"max_retries": True}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"idempotency_key": "a\x00b"}, "idempotency_key"),
        ({"idempotency_key": "a\ud800"}, "idempotency_key"),
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


def _lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [65, 500, 5000])
def test_a_payload_nested_deeper_than_the_limit_is_refused_before_anything_recurses(
    levels: int,
) -> None:
    # The payload object is level 1.
    with pytest.raises(InvalidPayload, match="JOBS_MAX_PAYLOAD_DEPTH=64") as info:
        job_submit(job_type="diagnostics.echo", payload={"message": _lists(levels - 1)})
    assert list(info.value.errors) == ["payload"]
    assert "JOBS_MAX_PAYLOAD_DEPTH=64" in info.value.errors["payload"][0]


def test_a_bulk_submission_names_the_index_of_a_payload_nested_too_deeply() -> None:
    requests = [
        JobRequest(job_type="diagnostics.echo", payload={"message": "ok"}),
        JobRequest(job_type="diagnostics.echo", payload={"message": _lists(1000)}),
    ]
    with pytest.raises(InvalidPayload, match="JOBS_MAX_PAYLOAD_DEPTH") as info:
        job_submit_many(requests=requests)
    assert info.value.index == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"key": "k", "note": "\ud800"}, "note"),
        ({"key": "k", "notes": [{"\udfff": 1}]}, "notes.0"),
        ({"key": "k\x00"}, "key"),
        ({"key": "k", "a\x00": 1}, "payload"),
    ],
)
def test_text_postgres_cannot_store_is_refused_even_where_no_serializer_looks(
    payload: dict[str, Any], field: str
) -> None:
    # tests.count has no payload serializer: only the submission's own check stands
    # between these strings and the jsonb column.
    with pytest.raises(InvalidPayload) as info:
        job_submit(job_type="tests.count", payload=payload)
    assert list(info.value.errors) == [field]


def test_a_float_field_of_a_payload_refuses_booleans() -> None:
    with pytest.raises(InvalidPayload) as info:
        job_submit(job_type="diagnostics.echo", payload={"message": "m", "sleep_seconds": True})
    assert info.value.errors == {"sleep_seconds": ["A valid number is required."]}
