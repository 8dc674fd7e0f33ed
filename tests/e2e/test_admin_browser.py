"""The admin in headless Chromium (whichever ``make browser`` found, driven by Playwright).

Screenshots go to ``tests/artifacts/admin/`` (gitignored); CI keeps them for a look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from jobs.models import Job, JobStatus
from jobs.services import job_submit
from tenants.models import Membership
from tests.browser import find_chromium, missing_message
from tests.e2e.commands import start_worker
from tests.e2e.conftest import ROOT, ManagedProcess
from tests.factories import JobFactory, OrganizationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

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
    chromium = find_chromium()
    if chromium is None:
        pytest.fail(missing_message())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []

    def _launch() -> Browser:
        playwright = sync_playwright().start()
        started.append(playwright)
        return playwright.chromium.launch(
            executable_path=chromium.executable, headless=True, args=CHROMIUM_ARGS
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
    start_worker(start_command, wait_for)
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


#: Reports every Content-Security-Policy violation of a page on its console.
CSP_PROBE = """
document.addEventListener("securitypolicyviolation", (e) => console.error(
  "csp-violation " + e.violatedDirective + " of " + (e.blockedURI || "inline") +
  " at " + e.sourceFile + ":" + e.lineNumber));
"""
FAILED_RED = "rgb(220, 53, 69)"


def test_the_admin_api_browser_and_docs_work_under_the_content_security_policy(
    broker: Any, live_server: Any, launch_browser: Callable[[], Browser], settings: Any
) -> None:
    settings.JOBS_DASHBOARD_REFRESH_SECONDS = 2
    user = User.objects.create_superuser("operator", "op@example.com", "correct horse battery")
    org = OrganizationFactory.create(slug="acme")
    Membership.objects.create(user=user, organization=org)
    now = timezone.now()
    failed = JobFactory.create(
        organization=org,
        status=JobStatus.FAILED,
        error_type="EchoFailure",
        error_message="Failing attempt 1 of 1 on purpose (fail_times). "
        "(retries exhausted after 1 attempts)",
        started_at=now,
        finished_at=now,
        dead_lettered_at=now,
    )
    JobFactory.create(organization=org, status=JobStatus.SUCCEEDED, started_at=now, finished_at=now)

    browser = launch_browser()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(CSP_PROBE)
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "csp-violation" in message.text or "Content Security Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)

    def visit(path: str) -> None:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.ok, path
        policy = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path

    def colour(selector: str) -> str:
        return str(page.eval_on_selector(selector, "e => getComputedStyle(e).color"))

    def background(selector: str) -> str:
        return str(page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor"))

    def box(selector: str) -> dict[str, float]:
        found = page.locator(selector).first.bounding_box()
        assert found is not None, selector
        return {"x": found["x"], "width": found["width"], "height": found["height"]}

    def crumbs() -> tuple[float, float, str]:
        """Where the breadcrumbs start and end across, and their band's colour."""
        band = box("nav ol.breadcrumbs")
        first = box("nav ol.breadcrumbs li a")
        return first["x"], band["width"], background("nav ol.breadcrumbs")

    visit("/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")  # form-action 'self', then a redirect
    page.wait_for_selector("#jobs-monitoring")

    visit("/admin/jobs/job/")
    assert page.locator("#result_list .job-status").count() == 2
    assert background("#result_list .job-status-failed") == FAILED_RED  # jobs/admin.css loaded
    assert page.evaluate("typeof window.django") == "object"  # the admin's scripts ran
    # A failed job's row is as tall as its text, not a column squeezed to a word per line.
    failed_row = box("#result_list tr:has(.job-status-failed)")
    succeeded_row = box("#result_list tr:has(.job-status-succeeded)")
    error_cell = box("#result_list tr:has(.job-status-failed) td.field-error_summary")
    assert failed_row["height"] <= 2 * succeeded_row["height"], (failed_row, succeeded_row)
    assert error_cell["width"] >= 200, error_cell
    assert "retries exhausted" in page.inner_text(
        "#result_list tr:has(.job-status-failed) td.field-error_summary"
    )
    stock = crumbs()
    page.screenshot(path=str(ARTIFACTS / "csp-1-job-list.png"), full_page=True)

    visit(f"/admin/jobs/job/{failed.pk}/change/")
    assert "EchoFailure" in page.content()
    assert page.eval_on_selector("pre.job-json", "e => getComputedStyle(e).whiteSpace") == (
        "pre-wrap"
    )
    page.click("#job-retry")
    page.wait_for_selector("#confirm-action")

    visit("/admin/jobs/job/dashboard/")
    assert crumbs() == stock  # the breadcrumbs sit where a stock admin page has them
    assert page.locator("#throughput-chart rect").count() >= 2
    assert colour(".jobs-dashboard .legend .failed") == FAILED_RED
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    assert page.locator(".chart-windows a").all_inner_texts() == ["1 h", "24 h", "7 d"]
    assert page.get_attribute("#throughput-chart", "data-window") == "24h"
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    # A window is fetched and swapped in, without a reload.
    with page.expect_response(lambda r: "window=1h" in r.url and "fragment=live" in r.url):
        page.click(".chart-windows a[data-window='1h']")
    page.wait_for_selector("#throughput-chart[data-window='1h']")
    assert "the last hour" in page.inner_text("#throughput h2")
    assert page.url.endswith("?window=1h")
    assert page.locator(".chart-windows a.selected").inner_text() == "1 h"
    page.click(".chart-windows a[data-window='7d']")
    page.wait_for_selector("#throughput-chart[data-window='7d']")
    assert "per hour, the last 7 days" in page.inner_text("#throughput h2")
    # And it keeps itself up to date by fetching its live part every refresh.
    shown = page.get_attribute("#dashboard-live", "data-updated-at")
    with page.expect_response(lambda r: "fragment=live" in r.url, timeout=15_000):
        pass
    page.wait_for_function(
        "shown => document.getElementById('dashboard-live').dataset.updatedAt !== shown", arg=shown
    )
    assert page.evaluate("window.loadedOnce") is True
    assert page.get_attribute("#throughput-chart", "data-window") == "7d"
    page.screenshot(path=str(ARTIFACTS / "csp-2-dashboard.png"), full_page=True)

    visit("/admin/jobs/job/dead-letters/")
    assert crumbs() == stock
    assert page.locator("#dead-letter-groups tbody tr form").count() >= 1

    visit("/api/v1/")  # the URL `make run` prints: the API's root, as DRF's browsable API
    assert page.inner_text(".page-header h1") == "API root"
    for link in ("/api/v1/docs/", "/api/v1/schema/", "/api/v1/jobs/", "/api/v1/job-types/"):
        assert page.locator(f".response-info a[href='{live_server.url}{link}']").count() == 1, link
    page.screenshot(path=str(ARTIFACTS / "csp-3-api-root.png"), full_page=True)
    as_json = page.request.get(f"{live_server.url}/api/v1/", headers={"Accept": "application/json"})
    assert as_json.ok and as_json.json()["jobs"] == f"{live_server.url}/api/v1/jobs/"

    visit("/api/v1/jobs/?format=api")
    page.wait_for_selector(".response-info")
    assert str(failed.pk) in page.inner_text(".response-info")
    assert page.evaluate("typeof window.jQuery") == "function"
    page.screenshot(path=str(ARTIFACTS / "csp-4-browsable-api.png"), full_page=True)

    visit("/api/v1/docs/")
    page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
    assert page.locator("#swagger-ui .opblock").count() >= 8
    assert "/api/v1/jobs/{job_id}/retry/" in page.inner_text("#swagger-ui")
    page.screenshot(path=str(ARTIFACTS / "csp-5-swagger-ui.png"), full_page=True)

    assert violations == []

    # The policy is enforced and every violation is seen: markup that slipped through
    # (an inline script without the nonce) does not run, and is reported.
    with page.expect_console_message(lambda m: "csp-violation" in m.text):
        page.evaluate(
            """() => { const s = document.createElement("script");
                       s.textContent = "window.injected = true"; document.body.append(s); }"""
        )
    assert page.evaluate("window.injected") is None
    assert len(violations) >= 1 and "script-src" in violations[0]
    browser.close()
