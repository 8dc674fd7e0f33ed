"""The production web server's logs never keep a key sent in a URL: access log and request log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

#: Keys sent where they do not belong: the query string and a Referer.
QUERY_SECRETS = {
    "api_key": "tbx_0a1b2c3d_QuerySecretQuerySecret",
    "token": "tok-secret-1",
    "access_token": "acc-secret-2",
}
REFERER = "https://app.example/callback?code=1&access_token=referer-secret-3"
SECRETS = ("QuerySecretQuerySecret", "tok-secret-1", "acc-secret-2", "referer-secret-3")
REDACTED_TARGET = (
    "/api/v1/jobs/?api_key=[redacted]&token=[redacted]&access_token=[redacted]&page_size=5"
)


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_gunicorn_and_the_request_log_write_secret_query_values_redacted(
    start_web: Callable[..., WebServer], wait_for: Any, asgi: bool
) -> None:
    web = start_web(asgi=asgi, LOG_FORMAT="json")

    response = httpx.get(
        f"{web.url}/api/v1/jobs/",
        params={**QUERY_SECRETS, "page_size": "5"},
        headers={"Referer": REFERER},
        timeout=30,
    )

    assert response.status_code == 401
    # The access line is written after the response has gone out.
    access_line = wait_for(
        lambda: next(
            (
                line
                for line in web.process.output().splitlines()
                if "/api/v1/jobs/?" in line and '" 401' in line
            ),
            None,
        ),
        timeout=30,
    )
    output = web.process.output()
    leaked = [secret for secret in SECRETS if secret in output]
    assert not leaked, output
    assert f'"GET {REDACTED_TARGET} HTTP/1.1" 401' in access_line
    if not asgi:  # gunicorn's format has the Referer; uvicorn's (ASGI) has not
        assert '"https://app.example/callback?code=1&access_token=[redacted]"' in access_line
    (warning,) = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and json.loads(line).get("logger") == "django.request"
    ]
    assert warning["message"] == "Unauthorized: /api/v1/jobs/"
    assert warning["request"] == f"GET {REDACTED_TARGET}"
