"""The admin in headless Chromium (Debian's package, driven by Playwright) with a real worker.

Screenshots go to ``tests/artifacts/admin/`` (gitignored); CI keeps them for a look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from jobs.models import Job, JobStatus
from jobs.services import job_submit
from tests.e2e.conftest import ROOT, ManagedProcess
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "admin"
XSS = "</pre><script>alert(1)</script>"


@pytest.fixture
def launch_browser() -> Iterator[Callable[[], Browser]]:
    """Starts Chromium when called: Playwright's sync API runs an event loop, inside
    which Django refuses synchronous queries, so the test seeds the database first."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium).")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []

    def _launch() -> Browser:
        playwright = sync_playwright().start()
        started.append(playwright)
        return playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )

    yield _launch
    for playwright in started:
        playwright.stop()


def _poll(page: Page, condition: Callable[[], bool], timeout: float = 45.0) -> None:
    """Reload the page until the condition holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.url} never showed what the test waited for")
        page.wait_for_timeout(500)
        page.reload()


def test_an_operator_retries_a_failed_job_and_watches_the_dashboard(
    broker: Any,
    live_server: Any,
    start_command: Callable[..., ManagedProcess],
    wait_for: Callable[..., Any],
    launch_browser: Callable[[], Browser],
) -> None:
    User.objects.create_superuser("operator", "op@example.com", "correct horse battery")
    org = OrganizationFactory.create(slug="acme")
    now = timezone.now()
    JobFactory.create(
        organization=org,
        status=JobStatus.FAILED,
        payload={"message": XSS, "password": "hunter2"},
        error_type="EchoFailure",
        error_message=XSS,
        started_at=now,
        finished_at=now,
    )
    worker = start_command("rundramatiq", "--processes", "1", "--threads", "2")
    wait_for(lambda: "Worker process is ready" in worker.output(), timeout=60)
    flaky = job_submit(
        job_type="diagnostics.echo",
        payload={"message": "flaky", "fail_times": 1},
        organization=org,
        max_retries=0,
    ).job
    ok = job_submit(job_type="diagnostics.echo", payload={"message": "fine"}, organization=org).job
    wait_for(
        lambda: (
            Job.objects.get(pk=flaky.pk).status == JobStatus.FAILED
            and Job.objects.get(pk=ok.pk).status == JobStatus.SUCCEEDED
        ),
        timeout=60,
    )
    short_id = str(flaky.pk)[:8]

    browser = launch_browser()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")
    page.wait_for_selector("#jobs-monitoring")

    page.goto(f"{live_server.url}/admin/jobs/job/")
    page.click("#changelist-filter a[href*='status__exact=failed']")
    page.wait_for_url("**status__exact=failed**")
    assert page.locator(f"#result_list a:text-is('{short_id}')").count() == 1
    assert page.locator("#result_list .job-status-succeeded").count() == 0
    page.screenshot(path=str(ARTIFACTS / "1-failed-jobs.png"), full_page=True)

    page.click(f"#result_list a:text-is('{short_id}')")
    page.wait_for_selector(".job-status-failed")
    assert "EchoFailure" in page.content()
    page.screenshot(path=str(ARTIFACTS / "2-failed-job.png"), full_page=True)

    page.click("#job-retry")
    page.click("#confirm-action")
    page.wait_for_selector(".messagelist .success")
    assert "Retried 1 job." in page.inner_text(".messagelist")
    _poll(page, lambda: page.locator(".job-status-succeeded").count() == 1)
    assert "attempt 2 succeeded" in page.inner_text(".job-timeline")
    page.screenshot(path=str(ARTIFACTS / "3-retried-job.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/")
    page.click("#jobs-monitoring a:text-is('Dashboard')")
    page.wait_for_selector("#throughput-chart")
    assert int(page.inner_text("#stat-finished-24h")) >= 2
    assert int(page.inner_text("#stat-workers")) >= 1
    assert page.locator("#throughput-chart rect").count() >= 1
    assert page.locator("#queue-stats tbody tr").count() >= 8
    page.screenshot(path=str(ARTIFACTS / "4-dashboard.png"), full_page=True)

    assert dialogs == []  # the markup in the payload and error never ran
    assert "hunter2" not in page.content()
    browser.close()
