"""Web requests skip the ``SELECT 1`` probe of a connection their thread used a moment ago."""

from __future__ import annotations

import time

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse

from jobs.api import connections

pytestmark = [pytest.mark.django_db(transaction=True)]


def _handle() -> bool:
    """One request as a WSGI server runs it; returns whether its connection was probed."""
    probed: list[bool] = []

    def view(request: HttpRequest) -> HttpResponse:
        probed.append(not connection.health_check_done)  # type: ignore[attr-defined]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return HttpResponse()

    # The test client detaches close_old_connections; a server's request runs it first.
    close_old_connections()
    request_started.send(sender=None)
    connections.trust_recent_connections(view)(HttpRequest())
    request_finished.send(sender=None)
    return probed[0]


def test_a_connection_used_by_the_previous_request_is_not_probed_again() -> None:
    assert connection.health_check_enabled  # type: ignore[attr-defined]
    _handle()

    assert _handle() is False


def test_an_idle_connection_is_still_probed_before_the_next_request() -> None:
    _handle()
    connections._local.last_used = time.monotonic() - connections.RECENT_USE_SECONDS - 1

    assert _handle() is True


def test_a_connection_with_an_error_is_not_trusted() -> None:
    _handle()
    connection.errors_occurred = True
    connection.health_check_done = False  # type: ignore[attr-defined]
    seen: list[bool] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(connection.health_check_done)  # type: ignore[attr-defined]
        return HttpResponse()

    try:
        connections.trust_recent_connections(view)(HttpRequest())
    finally:
        connection.errors_occurred = False

    assert seen == [False]
