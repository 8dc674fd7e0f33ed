"""Web requests skip the ``SELECT 1`` probe of a connection their thread used a moment ago."""

from __future__ import annotations

import time

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection

from jobs.api import connections

pytestmark = [pytest.mark.django_db(transaction=True)]


def _request_cycle() -> None:
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    request_finished.send(sender=None)


def test_a_connection_used_by_the_previous_request_is_not_probed_again() -> None:
    assert connection.health_check_enabled  # type: ignore[attr-defined]
    _request_cycle()

    request_started.send(sender=None)

    assert connection.connection is not None
    assert connection.health_check_done  # type: ignore[attr-defined]  # trusted: not probed
    request_finished.send(sender=None)


def test_an_idle_connection_is_still_probed_before_the_next_request() -> None:
    _request_cycle()
    connections._local.last_used = time.monotonic() - connections.RECENT_USE_SECONDS - 1

    request_started.send(sender=None)

    assert connection.connection is not None
    assert not connection.health_check_done  # type: ignore[attr-defined]  # probed first
    request_finished.send(sender=None)


def test_a_connection_that_errored_is_never_trusted() -> None:
    _request_cycle()
    connection.errors_occurred = True

    request_started.send(sender=None)

    # Django checked it (and found it usable) itself; nothing was skipped.
    assert not connection.errors_occurred
    request_finished.send(sender=None)
