"""Gunicorn's access log atoms are written with their secrets redacted (toolboxai/access_log.py)."""

from __future__ import annotations

import pytest

from jobs.redaction import REDACTED
from toolboxai.access_log import redact_atom


@pytest.mark.parametrize(
    ("name", "value", "written"),
    [
        (
            "r",
            "GET /api/v1/jobs/?api_key=k1&page_size=5 HTTP/1.1",
            f"GET /api/v1/jobs/?api_key={REDACTED}&page_size=5 HTTP/1.1",
        ),
        (
            "r",
            "GET http://user:pw@host/x?token=t1 HTTP/1.1",
            f"GET http://user:{REDACTED}@host/x?token={REDACTED} HTTP/1.1",
        ),
        ("q", "access_token=t2&q=a+b", f"access_token={REDACTED}&q=a+b"),
        ("{query_string}e", "password=p1", f"password={REDACTED}"),
        ("U", "/keys/tbx_0a1b2c3d_PathSecretPathSecret/", f"/keys/tbx_0a1b2c3d_{REDACTED}/"),
        (
            "f",
            "https://app.example/cb?code=1&token=t3",
            f"https://app.example/cb?code=1&token={REDACTED}",
        ),
        ("{referer}i", "https://app.example/?apiKey=t4", f"https://app.example/?apiKey={REDACTED}"),
        ("{location}o", "/login/?session_id=s1", f"/login/?session_id={REDACTED}"),
        ("{authorization}i", "Bearer tbx_0a1b2c3d_HeaderSecret", REDACTED),
        ("{x-api-key}i", "k5", REDACTED),
        ("{cookie}i", "sessionid=s2", REDACTED),
        ("{http_authorization}e", "Basic dXNlcjpwYXNz", REDACTED),
        ("{user-agent}i", "python-httpx/0.29.0", "python-httpx/0.29.0"),
        ("{x-request-id}i", "id token=t6", f"id token={REDACTED}"),
        ("a", "curl/8.0", "curl/8.0"),
        ("f", "-", "-"),
    ],
)
def test_access_log_atoms_are_written_redacted(name: str, value: str, written: str) -> None:
    assert redact_atom(name, value) == written
