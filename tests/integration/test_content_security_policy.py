"""Every page carries a strict Content-Security-Policy, and its inline tags carry the nonce.

The browser test (tests/e2e/test_admin_browser.py) loads the same pages in Chromium and
checks that nothing is refused; this one checks the header and the markup.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import JobStatus
from tenants.models import Membership
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")


def _policy(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _operator() -> Client:
    user = User.objects.create_superuser("operator", "op@example.com", "pw")
    Membership.objects.create(user=user, organization=OrganizationFactory.create(slug="acme"))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_login_page_sends_a_strict_policy() -> None:
    response = Client().get("/admin/login/")

    assert response.status_code == 200
    policy = _policy(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert policy["style-src"][0] == "'self'"
    for directive in ("script-src", "style-src", "default-src"):
        assert "'unsafe-inline'" not in policy[directive]
        assert "'unsafe-eval'" not in policy[directive]
        assert not any("http" in source or source == "*" for source in policy[directive])
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_api_responses_send_the_policy_too() -> None:
    response = Client().get("/api/v1/jobs/")

    assert response.status_code == 401
    assert _policy(response.headers["Content-Security-Policy"])["default-src"] == ["'self'"]


@pytest.mark.parametrize(
    ("path", "inline_tag"),
    [
        ("/api/v1/docs/", "<script"),  # Swagger UI's initialisation script
        ("/api/v1/docs/", "<style"),
        ("/api/v1/jobs/?format=api", "<style"),  # the browsable API's highlighting styles
    ],
)
def test_inline_scripts_and_styles_carry_the_nonce_of_their_response(
    path: str, inline_tag: str
) -> None:
    client = _operator()

    first, second = client.get(path), client.get(path)

    assert first.status_code == second.status_code == 200
    nonces = []
    for response in (first, second):
        match = NONCE.search(response.headers["Content-Security-Policy"])
        assert match, response.headers["Content-Security-Policy"]
        nonce = match.group(1)
        body = response.content.decode()
        inline = re.findall(rf"{inline_tag}(?![^>]*\bsrc=)[^>]*>", body)
        assert inline, f"no inline {inline_tag}> on {path}"
        assert all(f'nonce="{nonce}"' in tag for tag in inline), inline
        nonces.append(nonce)
    assert nonces[0] != nonces[1]  # a fresh nonce per response


def test_the_jobs_admin_pages_have_no_inline_styles_or_scripts(broker: Any) -> None:
    client = _operator()
    job = JobFactory.create(status=JobStatus.FAILED, error_type="Boom", error_message="x")

    for path in (
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job.pk}/change/",
        "/admin/jobs/job/dashboard/",
        "/admin/jobs/job/dead-letters/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert "jobs/admin.css" in body, path
        assert " style=" not in body, path
        match = NONCE.search(response.headers["Content-Security-Policy"])
        for tag in re.findall(r"<(?:script|style)(?![^>]*\bsrc=)[^>]*>", body):
            # Only Django's own inline blocks, and only with the nonce (or as inert JSON data).
            assert 'type="application/json"' in tag or (
                match and f'nonce="{match.group(1)}"' in tag
            ), (path, tag)
