"""``manage.py check`` refuses a Redis that may evict queue entries."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.test import override_settings

from jobs.checks import check_redis_eviction_policy

pytestmark = [pytest.mark.integration]


def test_an_evicting_redis_is_a_warning_in_development(redis_server: Any) -> None:
    server = redis_server("--maxmemory-policy", "allkeys-lru")
    with override_settings(REDIS_URL=server.url, DEBUG=True):
        messages = check_redis_eviction_policy()

    assert [(type(m), m.id) for m in messages] == [(Warning, "jobs.W802")]
    assert "allkeys-lru" in messages[0].msg and "noeviction" in str(messages[0].hint)


def test_an_evicting_redis_is_an_error_with_production_settings(redis_server: Any) -> None:
    server = redis_server("--maxmemory-policy", "volatile-lru")
    with override_settings(REDIS_URL=server.url, DEBUG=False):
        messages = check_redis_eviction_policy()

    assert [(type(m), m.id) for m in messages] == [(Error, "jobs.E802")]


def test_a_noeviction_redis_passes_the_check(redis_server: Any) -> None:
    server = redis_server("--maxmemory-policy", "noeviction")
    with override_settings(REDIS_URL=server.url, DEBUG=False):
        assert check_redis_eviction_policy() == []


def test_an_unreachable_redis_is_reported_as_a_warning_not_a_crash() -> None:
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0", DEBUG=False):
        messages = check_redis_eviction_policy()

    assert [m.id for m in messages] == ["jobs.W801"]
