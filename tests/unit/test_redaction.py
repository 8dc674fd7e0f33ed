"""Secret-looking values are redacted before the admin, the API or a log shows them."""

from __future__ import annotations

import uuid

from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.redaction import (
    _MAY_HOLD_SECRET,
    REDACTED,
    _may_hold_secret,
    is_secret_key,
    redact,
    redact_text,
)


def test_values_of_secret_looking_keys_are_redacted_at_any_depth() -> None:
    payload = {
        "message": "hello",
        "password": "hunter2",
        "nested": {"api_key": "k", "Authorization": "Bearer x", "list": [{"db_token": "t"}]},
        "X-Api-Key": "header",
        "client_secret": "s",
    }

    redacted = redact(payload)

    assert redacted == {
        "message": "hello",
        "password": REDACTED,
        "nested": {
            "api_key": REDACTED,
            "Authorization": REDACTED,
            "list": [{"db_token": REDACTED}],
        },
        "X-Api-Key": REDACTED,
        "client_secret": REDACTED,
    }
    assert payload["password"] == "hunter2"  # the input is not modified


def test_ordinary_keys_and_scalars_are_left_alone() -> None:
    assert redact({"message": "password is not a key here", "count": 3}) == {
        "message": "password is not a key here",
        "count": 3,
    }
    assert redact(["a", 1, None]) == ["a", 1, None]
    assert redact(None) is None
    assert not is_secret_key(3)


@override_settings(JOBS_REDACT_KEYS=["ssn", "Roblox-Cookie"])
def test_jobs_redact_keys_adds_words_to_the_builtin_list() -> None:
    assert redact({"user_ssn": "123", "roblox_cookie": "c", "name": "n"}) == {
        "user_ssn": REDACTED,
        "roblox_cookie": REDACTED,
        "name": "n",
    }


def test_secret_pairs_in_free_text_are_masked() -> None:
    text = 'login failed: password=hunter2, "api_key": "abc", Authorization: Bearer xyz; ok'

    masked = redact_text(text)

    assert "hunter2" not in masked
    assert "abc" not in masked
    assert "xyz" not in masked
    assert masked.startswith("login failed: password=" + REDACTED)
    assert masked.endswith("; ok")
    assert redact_text("nothing secret here") == "nothing secret here"


def test_token_counts_are_not_mistaken_for_tokens() -> None:
    usage = {"max_tokens": 100, "prompt_tokens": 12, "total_tokens": 40, "accessToken": "a"}
    assert redact(usage) == {
        "max_tokens": 100,
        "prompt_tokens": 12,
        "total_tokens": 40,
        "accessToken": REDACTED,
    }
    assert redact_text("max_tokens=100 secret_key=abc") == f"max_tokens=100 secret_key={REDACTED}"


_TEXT_PARTS = st.sampled_from(
    [
        "Bearer ",
        "BASIC ",
        "token\t",
        "Api-Key ",
        "tbx_",
        "SK-",
        "sg.",
        "to\u212aen ",
        "ba\u017fic ",
        "ba\u0131sic ",
        ":",
        "=",
        "abc",
        " ",
        "é",
        "id 1234",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TEXT_PARTS, max_size=6).map("".join))
def test_the_quick_check_for_secret_shapes_agrees_with_the_full_pattern(text: str) -> None:
    assert _may_hold_secret(text) == (_MAY_HOLD_SECRET.search(text) is not None)


def test_a_long_line_of_ids_is_left_as_is() -> None:
    line = "Submitted 3 jobs in one batch (diagnostics.echo on default), ids " + " ".join(
        str(uuid.uuid4()) for _ in range(3)
    )
    assert not _may_hold_secret(line)
    assert redact_text(line) == line
