"""Secrets never reach a log line: messages, arguments, extras and tracebacks are scrubbed."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from pythonjsonlogger.json import JsonFormatter

from jobs.logging import JobContextFilter, RedactSecretsFilter, bind_log_context
from jobs.redaction import redact


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(JobContextFilter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_in_messages_arguments_and_extras_are_redacted(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    logger.info(
        "Calling with %s and key %s",
        "Authorization: Bearer abcdefghijklmnop",
        "tbx_0a1b2c3d_c2VjcmV0c2VjcmV0c2VjcmV0",
        extra={"api_key": "plain-secret", "headers": {"X-Api-Key": "abc123"}, "count": 3},
    )
    logger.info("payload %r", {"password": "hunter2", "max_tokens": 100})

    text = stream.getvalue()
    for secret in (
        "abcdefghijklmnop",
        "c2VjcmV0c2VjcmV0c2VjcmV0",
        "plain-secret",
        "abc123",
        "hunter2",
    ):
        assert secret not in text
    first, second = _lines(stream)
    assert first["api_key"] == "[redacted]"
    assert first["headers"] == {"X-Api-Key": "[redacted]"}
    assert first["count"] == 3
    assert "tbx_0a1b2c3d_[redacted]" in str(first["message"])
    assert "'max_tokens': 100" in str(second["message"])


def test_a_traceback_carrying_a_secret_is_redacted(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    try:
        raise ValueError("connect to postgres://app:s3cr3tpw@db/prod failed")
    except ValueError:
        logger.exception("boom")

    (line,) = _lines(stream)
    assert "s3cr3tpw" not in stream.getvalue()
    assert "ValueError" in str(line["exc_info"])


def test_job_context_fields_appear_on_every_line_of_a_job(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    token = bind_log_context(job_id="j-1", organization_id=7, actor="diagnostics.echo")
    try:
        logger.info("inside")
    finally:
        from jobs.logging import unbind_log_context

        unbind_log_context(token)
    logger.info("outside")

    inside, outside = _lines(stream)
    assert (inside["job_id"], inside["organization_id"], inside["actor"]) == (
        "j-1",
        7,
        "diagnostics.echo",
    )
    assert outside["job_id"] == "-"


def test_redact_keeps_ordinary_values_and_drops_secret_named_ones() -> None:
    assert redact({"message": "hi", "client_secret": "x", "items": ["token=abc"]}) == {
        "message": "hi",
        "client_secret": "[redacted]",
        "items": ["token=[redacted]"],
    }


# --- A request in the extras (django.request) --------------------------------------------

#: A key sent in the query string: the API refuses it, and no log may keep it.
QUERY_SECRETS = {
    "api_key": "tbx_0a1b2c3d_QuerySecretQuerySecret",
    "token": "tok-secret-1",
    "access_token": "acc-secret-2",
}


def _project_handler(formatter: str) -> tuple[logging.Handler, io.StringIO]:
    """A handler with settings.LOGGING's console filters and the named formatter."""
    config: dict[str, Any] = copy.deepcopy(settings.LOGGING)
    configurator = logging.config.DictConfigurator(config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configurator.configure_formatter(config["formatters"][formatter]))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(config["filters"][name]))
    return handler, stream


@pytest.mark.django_db
@pytest.mark.parametrize("formatter", ["text", "json"])
def test_a_key_in_the_query_string_of_a_refused_request_is_redacted_in_the_request_log(
    formatter: str,
) -> None:
    handler, stream = _project_handler(formatter)
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(handler)
    try:
        response = Client().get("/api/v1/jobs/", {**QUERY_SECRETS, "page_size": "5"})
    finally:
        request_logger.removeHandler(handler)

    assert response.status_code == 401
    text = stream.getvalue()
    assert "Unauthorized: /api/v1/jobs/" in text
    for secret in QUERY_SECRETS.values():
        assert secret.removeprefix("tbx_0a1b2c3d_") not in text
    if formatter == "json":
        (line,) = _lines(stream)
        assert line["request"] == (
            "GET /api/v1/jobs/?api_key=[redacted]&token=[redacted]"
            "&access_token=[redacted]&page_size=5"
        )
        assert line["status_code"] == 401
