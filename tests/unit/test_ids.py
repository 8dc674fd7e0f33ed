"""Ids made in batches: message ids are random version 4 UUIDs, as uuid.uuid4() makes them;
job ids are time-ordered version 7 UUIDs."""

from __future__ import annotations

import time
import uuid

from jobs.transport.ids import uuid4_texts, uuid4s, uuid7s


def test_batched_ids_are_version_4_uuids_with_their_text() -> None:
    ids = uuid4s(500)
    assert len({u for u, _ in ids}) == 500
    for value, text in ids:
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert str(value) == text and uuid.UUID(text) == value


def test_batched_id_texts_are_version_4_uuids() -> None:
    texts = uuid4_texts(500)
    assert len(set(texts)) == 500
    for text in texts:
        value = uuid.UUID(text)
        assert str(value) == text and value.version == 4 and value.variant == uuid.RFC_4122


def test_an_empty_batch_is_empty() -> None:
    assert uuid4s(0) == [] and uuid4_texts(0) == []


def test_job_ids_are_version_7_uuids_carrying_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    ids = uuid7s(500)
    after = time.time_ns() // 1_000_000

    assert len({u for u, _ in ids}) == 500
    for value, text in ids:
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert str(value) == text and uuid.UUID(text) == value
        assert before <= value.int >> 80 <= after
    assert uuid7s(0) == []


def test_ids_of_a_later_millisecond_sort_after_every_earlier_one() -> None:
    earlier = uuid7s(200, now_ms=1_780_000_000_000)
    later = uuid7s(200, now_ms=1_780_000_000_001)

    assert max(u for u, _ in earlier) < min(u for u, _ in later)
    assert max(t for _, t in earlier) < min(t for _, t in later)
    assert {u.int >> 80 for u, _ in earlier} == {1_780_000_000_000}
