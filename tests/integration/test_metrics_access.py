"""The web's /metrics answers only to METRICS_TOKEN or METRICS_ALLOWED_NETWORKS (DEBUG=0)."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-token-for-the-tests-0123456789"


def _get(address: str = "127.0.0.1", authorization: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = Client(REMOTE_ADDR=address).get("/metrics", headers=headers)
    return (
        response.status_code,
        response.headers.get("WWW-Authenticate", ""),
        response.content.decode(),
    )


@override_settings(DEBUG=False, METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=[])
def test_production_metrics_answer_no_one_until_a_token_or_network_is_configured() -> None:
    for address in ("127.0.0.1", "10.1.2.3", "::1"):
        status, _, body = _get(address)
        assert status == 403, address
        assert "django_http" not in body


@override_settings(DEBUG=False, METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=[])
def test_metrics_answer_the_bearer_token_and_challenge_everyone_else() -> None:
    status, challenge, body = _get()
    assert (status, challenge) == (401, 'Bearer realm="metrics"')
    assert "django_http" not in body

    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        status, challenge, body = _get(authorization=wrong)
        assert status == 401, wrong
        assert challenge == 'Bearer realm="metrics", error="invalid_token"'
        assert "django_http" not in body

    for right in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        status, _, body = _get("203.0.113.9", authorization=right)
        assert status == 200, right
        assert "django_http_requests_total_by_method_total" in body


@override_settings(
    DEBUG=False, METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=["10.0.0.0/8", "2001:db8::/32"]
)
def test_metrics_answer_allowed_networks_without_a_token() -> None:
    assert _get("10.1.2.3")[0] == 200
    assert _get("::ffff:10.1.2.3")[0] == 200  # IPv4-mapped, as a dual-stack server sees it
    assert _get("2001:db8::7")[0] == 200
    assert _get("127.0.0.1")[0] == 403
    assert _get("11.0.0.1")[0] == 403
    assert _get("not an address")[0] == 403


@override_settings(DEBUG=False, METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_either_the_token_or_an_allowed_network_is_enough() -> None:
    assert _get("10.1.2.3")[0] == 200
    assert _get("192.0.2.1", authorization=f"Bearer {TOKEN}")[0] == 200
    assert _get("192.0.2.1")[0] == 401
