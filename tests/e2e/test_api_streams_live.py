"""Event streams are capped per key, per organization and per web process, and free their slots.

Real gunicorn (threaded WSGI workers, and the events service: uvicorn workers)
and real HTTP clients, each stream on its own connection. The tests of the
caps run against both servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jobs.models import Job
from jobs.transport.stream_leases import event_streams_open
from tenants.services import api_key_create
from tests.e2e.conftest import WebServer
from tests.factories import JobFactory
from tests.integration.api.conftest import Tenant, make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HEARTBEAT_SECONDS = 1


class Streams:
    """Open event streams, each over its own connection; all are closed after the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack = contextlib.ExitStack()

    def open(self, raw_key: str, job: Job) -> httpx.Response:
        """Open a stream; its response once the headers arrived (a 429 is read whole)."""
        client = self._stack.enter_context(
            httpx.Client(
                base_url=self.url,
                headers={"Authorization": f"Bearer {raw_key}", "Accept": "text/event-stream"},
                timeout=5,
            )
        )
        response = self._stack.enter_context(client.stream("GET", f"/api/v1/jobs/{job.pk}/events/"))
        if response.status_code != 200:
            response.read()
        return response

    def close_all(self) -> None:
        self._stack.close()


@pytest.fixture
def streams() -> Iterator[Any]:
    opened: list[Streams] = []

    def _for(web: WebServer) -> Streams:
        opened.append(Streams(web.url))
        return opened[-1]

    yield _for
    for s in opened:
        s.close_all()


def _second_key(tenant: Tenant) -> str:
    return api_key_create(membership=tenant.api_key.membership, name="second").raw


def _assert_too_many(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 429, f"the stream opened ({response.status_code})"
    error = response.json()["error"]
    assert error["code"] == "too_many_streams"
    assert setting in error["message"]
    assert int(response.headers["Retry-After"]) == HEARTBEAT_SECONDS


def _web(start_web: Any, *, asgi: bool = False, **env: str) -> WebServer:
    web: WebServer = start_web(
        asgi=asgi, API_EVENTS_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS), **env
    )
    return web


@pytest.mark.parametrize("asgi", [False, True], ids=["threaded", "events-service"])
def test_streams_beyond_the_key_or_organization_cap_get_429_before_they_start(
    broker: Any, start_web: Any, streams: Any, asgi: bool
) -> None:
    web = _web(
        start_web,
        asgi=asgi,
        API_EVENTS_MAX_STREAMS_PER_KEY="2",
        API_EVENTS_MAX_STREAMS_PER_ORGANIZATION="3",
    )
    a, b = make_tenant("stream-a"), make_tenant("stream-b")
    a_job, b_job = (
        JobFactory.create(organization=a.organization),
        JobFactory.create(organization=b.organization),
    )
    s = streams(web)

    assert [s.open(a.raw_key, a_job).status_code for _ in range(2)] == [200, 200]
    _assert_too_many(s.open(a.raw_key, a_job), "API_EVENTS_MAX_STREAMS_PER_KEY")
    other_key = _second_key(a)
    assert s.open(other_key, a_job).status_code == 200
    _assert_too_many(s.open(other_key, a_job), "API_EVENTS_MAX_STREAMS_PER_ORGANIZATION")
    assert s.open(b.raw_key, b_job).status_code == 200  # another organization's own caps
    assert event_streams_open(organization_id=a.organization.pk) == 3


@pytest.mark.parametrize("asgi", [False, True], ids=["threaded", "events-service"])
def test_a_client_that_disconnects_frees_its_slot_within_a_heartbeat(
    broker: Any, start_web: Any, streams: Any, asgi: bool, wait_for: Any
) -> None:
    web = _web(start_web, asgi=asgi, API_EVENTS_MAX_STREAMS_PER_KEY="1")
    tenant = make_tenant("stream-leaver")
    job = JobFactory.create(organization=tenant.organization)
    first, waiting = streams(web), streams(web)
    assert first.open(tenant.raw_key, job).status_code == 200
    _assert_too_many(waiting.open(tenant.raw_key, job), "API_EVENTS_MAX_STREAMS_PER_KEY")

    first.close_all()
    closed_at = time.monotonic()
    wait_for(lambda: waiting.open(tenant.raw_key, job).status_code == 200, timeout=10)

    # One heartbeat, one poll (API_EVENTS_POLL_MS) and some scheduling slack.
    assert time.monotonic() - closed_at < HEARTBEAT_SECONDS + 1.5


def test_healthz_and_other_tenants_answer_while_a_tenant_holds_its_most_streams(
    broker: Any, start_web: Any, streams: Any, wait_for: Any
) -> None:
    threads = 8
    web = _web(start_web, WEB_THREADS=str(threads))
    greedy, other = make_tenant("stream-greedy"), make_tenant("stream-other")
    job = JobFactory.create(organization=greedy.organization)
    s = streams(web)

    statuses = []
    for _ in range(threads + 1):  # without a cap, the last one waits for a free thread
        statuses.append(s.open(greedy.raw_key, job).status_code)
        if statuses[-1] != 200:
            break
    assert statuses == [200] * (threads // 2) + [429]
    with httpx.Client(base_url=web.url, timeout=2) as client:
        assert client.get("/healthz").status_code == 200
        listed = client.get("/api/v1/jobs/", headers={"Authorization": f"Bearer {other.raw_key}"})
        assert listed.status_code == 200

    s.close_all()
    other_job = JobFactory.create(organization=other.organization)
    wait_for(lambda: streams(web).open(other.raw_key, other_job).status_code == 200, timeout=10)


@pytest.mark.parametrize("asgi", [False, True], ids=["threaded", "events-service"])
def test_a_living_stream_renews_its_lease_and_a_killed_servers_slots_expire(
    broker: Any, start_web: Any, streams: Any, asgi: bool, wait_for: Any
) -> None:
    web = _web(start_web, asgi=asgi)
    tenant = make_tenant("stream-lease")
    job = JobFactory.create(organization=tenant.organization)
    assert streams(web).open(tenant.raw_key, job).status_code == 200
    key = f"{broker.namespace}:streams:key:{tenant.api_key.pk}"
    ((_, first_expiry),) = broker.client.zrange(key, 0, -1, withscores=True)

    # The lease lasts three heartbeats; renewed every heartbeat, it moves past its first expiry.
    wait_for(
        lambda: broker.client.zrange(key, 0, -1, withscores=True)[0][1] > first_expiry + 2000,
        timeout=10,
    )
    assert event_streams_open(organization_id=tenant.organization.pk) == 1

    os.killpg(web.process.proc.pid, signal.SIGKILL)  # no finally runs: the slots are left
    wait_for(lambda: event_streams_open(organization_id=tenant.organization.pk) == 0, timeout=10)


def test_the_asgi_server_applies_the_tenant_caps_but_not_the_thread_cap(
    broker: Any, start_web: Any, streams: Any, wait_for: Any
) -> None:
    web = _web(start_web, asgi=True, WEB_THREADS="2", API_EVENTS_MAX_STREAMS_PER_KEY="3")
    tenant = make_tenant("stream-asgi")
    job = JobFactory.create(organization=tenant.organization)
    first, rest = streams(web), streams(web)

    assert first.open(tenant.raw_key, job).status_code == 200
    assert [rest.open(tenant.raw_key, job).status_code for _ in range(2)] == [200, 200]
    _assert_too_many(rest.open(tenant.raw_key, job), "API_EVENTS_MAX_STREAMS_PER_KEY")

    first.close_all()
    wait_for(lambda: event_streams_open(organization_id=tenant.organization.pk) == 2, timeout=10)
