"""The events service: event streams on an event loop (gunicorn with uvicorn workers).

Real processes (the events service, the threaded web server, rundramatiq, nginx
with the shipped snippet) and real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.services import job_submit
from jobs.transport.events import channel_name
from jobs.transport.stream_leases import event_streams_open
from tenants.services import api_key_create
from tests.actors import release
from tests.e2e.conftest import ROOT, WebServer, free_port
from tests.factories import JobFactory
from tests.integration.api.conftest import make_tenant
from tests.servers import Process, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_events_service_streams_status_progress_and_partial_results_from_one_hub(
    broker: Any, start_web: Any, start_command: Any, wait_for: Any
) -> None:
    events: WebServer = start_web(asgi=True, API_EVENTS_HEARTBEAT_SECONDS="1")
    start_command("rundramatiq", "--processes", "1", "--threads", "2")
    tenant = make_tenant("hub-stream")
    # Each job's chunks wait for the test, which lets them go once every stream has
    # shown the state before them: however slow the machine, each stream sees it run.
    jobs = [
        job_submit(
            job_type="tests.stream_text",
            payload={"chunks": ["Photo", "synthesis ", "explained."], "hold_key": f"hub-{n}"},
            organization=tenant.organization,
        ).job
        for n in range(2)
    ]
    followed = [str(job.pk) for job in jobs for _ in range(2)]  # two streams per job
    seen: list[list[tuple[str, Any]]] = [[] for _ in followed]

    def release_step(step: int) -> None:
        for n in range(len(jobs)):
            release(f"hub-{n}:{step}")

    def shown(stream: list[tuple[str, Any]], name: str, status: str | None = None) -> bool:
        return any(n == name and status in (None, data.get("status")) for n, data in stream)

    async def follow_all() -> list[int]:
        async with httpx.AsyncClient(
            base_url=events.url,
            headers={"Authorization": f"Bearer {tenant.raw_key}"},
            timeout=30,
        ) as client:

            async def follow(job_id: str, stream: list[tuple[str, Any]]) -> None:
                async with client.stream("GET", f"/api/v1/jobs/{job_id}/events/") as response:
                    assert response.status_code == 200, await response.aread()
                    assert response.headers["content-type"].startswith("text/event-stream")
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[len("event: ") :]
                        elif line.startswith("data: ") and event is not None:
                            stream.append((event, json.loads(line[len("data: ") :])))
                            event = None

            async def until(condition: Callable[[], bool], timeout: float = 120) -> None:
                deadline = asyncio.get_running_loop().time() + timeout
                while not condition():
                    assert asyncio.get_running_loop().time() < deadline, seen
                    await asyncio.sleep(0.05)

            async def steer() -> list[int]:
                await until(lambda: all(seen))  # every stream is open
                # Two streams follow each job: still one subscription of its channel.
                channels = [channel_name(str(job.pk)) for job in jobs]
                subscribers = [n for _, n in broker.client.pubsub_numsub(*channels)]
                await until(lambda: all(shown(s, "status", "running") for s in seen))
                release_step(1)
                await until(lambda: all(shown(s, "progress") for s in seen))
                release_step(2)
                release_step(3)
                return subscribers

            steering = asyncio.create_task(steer())
            await asyncio.gather(
                steering, *[follow(job_id, s) for job_id, s in zip(followed, seen, strict=True)]
            )
            return steering.result()

    try:
        subscribers = asyncio.run(follow_all())
    finally:
        for step in (1, 2, 3):
            release_step(step)
    assert subscribers == [1, 1]
    for stream in seen:
        names = [name for name, _ in stream]
        assert names[0] == "status"
        assert stream[-1][0] == "status" and stream[-1][1]["status"] == "succeeded"
        assert stream[-1][1]["result"] == {"text": "Photosynthesis explained."}
        assert [data["text"] for name, data in stream if name == "partial"][-1] == "explained."
        progress = [data["progress"] for name, data in stream if name == "progress"]
        assert progress and progress == sorted(progress)
        assert "changed" not in names  # the hub's notices are never shown
    wait_for(lambda: event_streams_open(organization_id=tenant.organization.pk) == 0)
    channels = [channel_name(str(job.pk)) for job in jobs]
    wait_for(lambda: [n for _, n in broker.client.pubsub_numsub(*channels)] == [0, 0])


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not found:
        pytest.fail(
            "nginx is not installed, and this test runs the shipped nginx snippet. "
            "Install it: make nginx (apt-get install nginx-light)."
        )
    return found


@pytest.fixture
def nginx_split(tmp_path: Path) -> Iterator[Callable[[WebServer, WebServer], str]]:
    """nginx with deploy/nginx/toolboxai.conf in front of a web server and an events service."""
    started: list[Process] = []

    def _start(web: WebServer, events: WebServer) -> str:
        port = free_port()
        snippet = (ROOT / "deploy" / "nginx" / "toolboxai.conf").read_text()
        for name, server in (("web:8000", web), ("events:8001", events)):
            assert f"server {name};" in snippet
            snippet = snippet.replace(f"server {name};", f"server {server.url.split('//')[1]};")
        assert "listen 80;" in snippet
        snippet = snippet.replace("listen 80;", f"listen 127.0.0.1:{port};")
        (tmp_path / "toolboxai.conf").write_text(snippet)
        (tmp_path / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log;\n"
            "events { worker_connections 2048; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
            f"  proxy_temp_path {tmp_path}/proxy;\n  include {tmp_path}/toolboxai.conf;\n}}\n"
        )
        argv = [
            nginx_binary(),
            "-p",
            str(tmp_path),
            "-e",
            "stderr",
            "-c",
            str(tmp_path / "nginx.conf"),
        ]
        nginx = Process(argv, log_path=tmp_path / "nginx.log")
        started.append(nginx)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: _answers(f"{url}/healthz") or not nginx.alive(), timeout=20, what="nginx"
        )
        assert nginx.alive(), nginx.output()
        return url

    yield _start
    for nginx in started:
        nginx.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_behind_the_nginx_split_a_crowd_of_streams_leaves_health_and_other_tenants_answering(
    broker: Any, start_web: Any, nginx_split: Any, wait_for: Any
) -> None:
    caps = {"API_EVENTS_MAX_STREAMS_PER_KEY": "60", "API_EVENTS_MAX_STREAMS_PER_ORGANIZATION": "80"}
    web = start_web(**caps)
    events = start_web(asgi=True, **caps)
    entry = nginx_split(web, events)
    crowd, calm, other = make_tenant("crowd"), make_tenant("calm"), make_tenant("other")
    crowd_keys = [crowd.raw_key] + [
        api_key_create(membership=crowd.api_key.membership, name=f"k{n}").raw for n in range(3)
    ]
    crowd_job = JobFactory.create(organization=crowd.organization)
    calm_job = JobFactory.create(organization=calm.organization)
    JobFactory.create(organization=other.organization)

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], list[int]]:
        async with httpx.AsyncClient(
            base_url=entry,
            timeout=10,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        ) as client:
            opened: list[httpx.Response] = []

            async def open_stream(key: str, job_id: str) -> httpx.Response:
                request = client.build_request(
                    "GET",
                    f"/api/v1/jobs/{job_id}/events/",
                    headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
                )
                response = await client.send(request, stream=True)
                if response.status_code == 200:
                    opened.append(response)
                else:
                    await response.aread()
                return response

            async def others_meanwhile(rounds: int) -> list[int]:
                statuses = []
                for _ in range(rounds):
                    # Each answers 200 within the client's timeout, whatever the streams do.
                    health = await client.get("/healthz", timeout=5)
                    listed = await client.get(
                        "/api/v1/jobs/",
                        headers={"Authorization": f"Bearer {other.raw_key}"},
                        timeout=5,
                    )
                    statuses += [health.status_code, listed.status_code]
                return statuses

            try:
                results = await asyncio.gather(
                    others_meanwhile(10),
                    *[open_stream(crowd_keys[n % 4], str(crowd_job.pk)) for n in range(200)],
                    *[open_stream(calm.raw_key, str(calm_job.pk)) for _ in range(50)],
                )
                # And once all of them are open.
                after = await others_meanwhile(3)
            finally:
                for response in opened:
                    await response.aclose()
            statuses: list[int] = results[0] + after  # type: ignore[operator]
            return results[1:201], results[201:], statuses  # type: ignore[return-value]

    crowd_answers, calm_answers, others = asyncio.run(scenario())

    assert sorted(r.status_code for r in crowd_answers) == [200] * 80 + [429] * 120
    refused = next(r for r in crowd_answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert "API_EVENTS_MAX_STREAMS_PER_ORGANIZATION" in refused.json()["error"]["message"]
    assert "Retry-After" in refused.headers
    assert [r.status_code for r in calm_answers] == [200] * 50
    assert others == [200] * len(others)
    for tenant in (crowd, calm):
        wait_for(
            lambda t=tenant: event_streams_open(organization_id=t.organization.pk) == 0,
            timeout=15,
        )
