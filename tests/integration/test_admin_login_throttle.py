"""Failed admin logins are throttled per username and per address, in Redis (HTTP 429)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory, override_settings
from dramatiq.brokers.redis import RedisBroker

from jobs.admin.login_throttle import client_address
from jobs.broker import setup

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOGIN = "/admin/login/"
PASSWORD = "correct horse battery staple"
WRONG = "pw-Wr0ng-and-never-logged-7f3a"
LIMIT = 3


@pytest.fixture(autouse=True)
def throttle_settings(broker: RedisBroker) -> Iterator[RedisBroker]:
    with override_settings(ADMIN_LOGIN_MAX_FAILURES=LIMIT, ADMIN_LOGIN_WINDOW_SECONDS=60):
        yield broker


@pytest.fixture
def operator() -> User:
    return User.objects.create_superuser("operator", "op@example.com", PASSWORD)


def _login(username: str, password: str, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}
    )


def _ok(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"] == "/admin/")


def test_a_username_with_too_many_failures_is_refused_even_with_the_right_password(
    operator: User,
) -> None:
    # From a different address each time: only the username's count reaches the limit.
    for i in range(LIMIT):
        response = _login("operator", WRONG, address=f"10.0.1.{i}")
        assert response.status_code == 200, "a failed login shows the form again"

    refused = _login("operator", PASSWORD, address="10.0.2.1")

    assert refused.status_code == 429
    assert 55 <= int(refused["Retry-After"]) <= 60
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    assert _login("someone-else", WRONG, address="10.0.2.1").status_code == 200  # not refused


def test_an_address_with_too_many_failures_is_refused_for_every_username(operator: User) -> None:
    for i in range(LIMIT):
        assert _login(f"guess-{i}", WRONG, address="192.0.2.7").status_code == 200

    assert _login("operator", PASSWORD, address="192.0.2.7").status_code == 429
    assert _ok(_login("operator", PASSWORD, address="192.0.2.8"))


@override_settings(ADMIN_LOGIN_WINDOW_SECONDS=1)
def test_the_refusal_ends_when_the_window_passes(
    operator: User, wait_for: Callable[..., Any]
) -> None:
    started = time.monotonic()
    for _ in range(LIMIT):
        _login("operator", WRONG)
    assert _login("operator", PASSWORD).status_code == 429

    wait_for(lambda: _ok(_login("operator", PASSWORD)), timeout=10, interval=0.1)

    assert time.monotonic() - started >= 0.9


def test_a_successful_login_resets_the_usernames_count(operator: User) -> None:
    addresses = iter(f"10.0.3.{i}" for i in range(10))
    for _ in range(LIMIT - 1):
        _login("operator", WRONG, address=next(addresses))
    assert _ok(_login("operator", PASSWORD, address=next(addresses)))
    for _ in range(LIMIT - 1):
        _login("operator", WRONG, address=next(addresses))

    # 4 failures in all, but only 2 since the success.
    assert _ok(_login("operator", PASSWORD, address=next(addresses)))


def test_the_counts_live_in_redis_for_every_web_process(
    operator: User, throttle_settings: RedisBroker
) -> None:
    for _ in range(LIMIT):
        _login("Operator ", WRONG)  # as the login form cleans it: the same username
    assert _login("operator", PASSWORD).status_code == 429
    keys = throttle_settings.client.keys("*admin-login*")
    assert len(keys) == 2
    assert all(0 < throttle_settings.client.ttl(key) <= 60 for key in keys)

    throttle_settings.client.flushdb()  # what every process reads, gone

    assert _ok(_login("operator", PASSWORD))


def test_each_failed_or_refused_attempt_logs_one_warning_without_the_password(
    operator: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(LIMIT):
        _login("operator", WRONG, address="203.0.113.5")
    _login("operator", WRONG, address="203.0.113.5")
    _login("operator", PASSWORD, address="203.0.113.5")

    ours = [r for r in caplog.records if r.name == "jobs.admin.login_throttle"]
    assert [r.levelno for r in ours] == [logging.WARNING] * (LIMIT + 2)
    messages = [r.getMessage() for r in ours]
    assert all("'operator'" in m and "203.0.113.5" in m for m in messages)
    assert [m.startswith("Admin login failed") for m in messages] == [True] * LIMIT + [False] * 2
    assert all(m.startswith("Admin login refused") for m in messages[LIMIT:])
    for record in caplog.records:
        assert WRONG not in record.getMessage()
        assert PASSWORD not in record.getMessage()
        assert WRONG not in str(record.args) and PASSWORD not in str(record.args)
    assert WRONG not in caplog.text and PASSWORD not in caplog.text


def test_without_redis_logins_are_not_throttled(
    operator: User, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            setup()
            for _ in range(LIMIT + 1):
                assert _login("operator", WRONG).status_code == 200
            assert _ok(_login("operator", PASSWORD))
    finally:
        setup()
    assert "Admin login throttle skipped: Redis did not answer" in caplog.text


def test_the_address_is_remote_addr_unless_the_proxy_is_trusted() -> None:
    request = RequestFactory().post(
        LOGIN, REMOTE_ADDR="172.18.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4"
    )
    assert client_address(request) == "172.18.0.1"
    with override_settings(ADMIN_LOGIN_TRUST_X_FORWARDED_FOR=True):
        # The last address is the one the proxy appended; earlier ones are the client's say.
        assert client_address(request) == "198.51.100.4"
        assert client_address(RequestFactory().post(LOGIN, REMOTE_ADDR="172.18.0.1")) == (
            "172.18.0.1"
        )

    v6 = RequestFactory().post(LOGIN, REMOTE_ADDR="2001:db8:1:2:aaaa::1")
    assert client_address(v6) == "2001:db8:1:2::/64"
    mapped = RequestFactory().post(LOGIN, REMOTE_ADDR="::ffff:192.0.2.9")
    assert client_address(mapped) == "192.0.2.9"
    assert client_address(RequestFactory().post(LOGIN, REMOTE_ADDR="")) == "unknown"
