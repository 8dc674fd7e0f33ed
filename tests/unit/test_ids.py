"""Job and message ids made in batches are random version 4 UUIDs, as uuid.uuid4() makes them."""

from __future__ import annotations

import uuid

from jobs.transport.ids import uuid4_texts, uuid4s


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
