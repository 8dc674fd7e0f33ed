"""Secret-looking values are redacted before the admin, the API or a log shows them."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.redaction import (
    _MAY_HOLD_SECRET,
    REDACTED,
    _may_hold_secret,
    is_secret_key,
    redact,
    redact_query_string,
    redact_text,
    redact_url,
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


# --- Which key names are secret --------------------------------------------------------

#: Names whose values are redacted: whole words, plurals, camelCase and headers.
SECRET_NAMES = [
    "password",
    "passwords",
    "Password",
    "smtp_password",
    "dbpassword",  # a secret word of 5+ letters also ends a one-word part
    "db.password",
    "passwd",
    "passphrase",
    "db_pass",
    "DB_PASS",
    "dbPass",
    "pass",  # decided: `pass` alone is a password (db_pass, smtp_pass)
    "pwd",
    "user_pwd",
    "auth",
    "basic_auth",
    "auth_header",
    "Authorization",
    "Proxy-Authorization",
    "X-Api-Key",
    "api_key",
    "api_keys",
    "apiKey",
    "APIKey",
    "apikey",
    "accessToken",
    "access_token",
    "refresh_token",
    "oauth_token",
    "id_token",
    "csrftoken",
    "token",
    "client_secret",
    "clientSecret",
    "secret_key",
    "secrets",
    "webhook_secret",
    "credential",
    "credentials",
    "aws_credentials",
    "creds",
    "private_key",
    "privateKey",
    "sessionid",
    "session_id",
    "sessionId",
    "session_key",
    "cookie",
    "cookies",
    "Set-Cookie",
    "jwt",
]

#: Names left alone, with the doubtful ones decided.
ORDINARY_NAMES = [
    "max_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "maxTokens",
    "tokens",  # decided: plural `tokens` is a count (OpenAI usage), never a token
    "token_count",  # decided: a last part count/length/limit/type/usage describes the secret
    "tokenCount",
    "token_type",  # decided: OAuth's "Bearer"
    "token_limit",
    "password_length",
    "tokenizer",
    "author",
    "author_name",
    "authority",  # decided: a URL authority or an issuer, not a credential
    "oauth",  # decided: only its nested keys (oauth.token, ...) are judged
    "session",  # decided: likewise
    "passenger",
    "compass",
    "bypass",
    "passes",
    "passport",
    "keyboard",
    "monkey",
    "key",
    "keys",
    "idempotency_key",
    "secretary",
    "message",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_values_of_secret_names_are_redacted(name: str) -> None:
    assert is_secret_key(name)
    assert redact({name: "s3cr3t-value"}) == {name: REDACTED}
    assert redact_text(f"failed with {name}=s3cr3t-value, retrying") == (
        f"failed with {name}={REDACTED}, retrying"
    )
    assert (
        redact_text(f'{{"{name}": "s3cr3t-value", "n": 1}}') == f'{{"{name}": {REDACTED}, "n": 1}}'
    )


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_values_of_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_key(name)
    assert redact({name: "plain-value"}) == {name: "plain-value"}
    assert redact_text(f"{name}=plain-value") == f"{name}=plain-value"


def test_a_secret_pair_after_an_ordinary_one_is_still_masked() -> None:
    text = "error: db_pass=hunter2 (max_tokens=100), note: credentials: c1 author=bob"

    assert redact_text(text) == (
        f"error: db_pass={REDACTED} (max_tokens=100), note: credentials: {REDACTED} author=bob"
    )


def test_query_strings_lose_secret_parameter_values_and_keep_the_rest_as_sent() -> None:
    query = "api_key=tbx_0a1b2c3d_c2VjcmV0c2VjcmV0&page_size=5&Token=abc&access_token=x%2By&q=a+b"

    assert redact_query_string(query) == (
        f"api_key={REDACTED}&page_size=5&Token={REDACTED}&access_token={REDACTED}&q=a+b"
    )
    assert redact_query_string("page_size=5&q=a%20b&flag") == "page_size=5&q=a%20b&flag"
    assert redact_query_string("q=tbx_0a1b2c3d_c2VjcmV0c2VjcmV0") == (f"q=tbx_0a1b2c3d_{REDACTED}")
    assert redact_url("/api/v1/jobs/?password=hunter2&status=failed") == (
        f"/api/v1/jobs/?password={REDACTED}&status=failed"
    )
    assert redact_url("https://app:pw@example.com/x") == f"https://app:{REDACTED}@example.com/x"
