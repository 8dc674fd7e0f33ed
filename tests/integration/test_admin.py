"""The job admin against real Postgres and Redis: scope, escaping, actions, dashboard."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.admin.pagination import EstimatedCountPaginator
from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from tests.factories import JobFactory, OrganizationFactory, staff_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

XSS = "</pre><script>alert(1)</script>"
XSS_ESCAPED = "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
LIST = "/admin/jobs/job/"


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _superuser() -> User:
    return User.objects.create_superuser("root", "root@example.com", "pw")


def _failed(**fields: Any) -> Job:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "status": JobStatus.FAILED,
        "attempts": 1,
        "started_at": now - timedelta(seconds=2),
        "finished_at": now,
        "dead_lettered_at": now,
        "error_type": "EchoFailure",
        "error_message": "boom",
    }
    return JobFactory.create(**(defaults | fields))


# --- isolation ---------------------------------------------------------------------
def test_a_staff_user_of_one_organization_sees_only_its_jobs() -> None:
    a, b = OrganizationFactory.create(slug="org-a"), OrganizationFactory.create(slug="org-b")
    mine = JobFactory.create(organization=a, job_type="diagnostics.echo")
    theirs = JobFactory.create(organization=b, job_type="diagnostics.echo")
    system = JobFactory.create(organization=None)
    client = _client(staff_user("alice", a, perms=("jobs.view_job",)))

    body = client.get(LIST).content.decode()

    assert str(mine.pk)[:8] in body
    assert str(theirs.pk)[:8] not in body
    assert str(system.pk)[:8] not in body
    assert "org-b" not in body  # not even in the organization filter


def test_another_organizations_job_page_answers_404() -> None:
    a, b = OrganizationFactory.create(slug="org-a"), OrganizationFactory.create(slug="org-b")
    theirs = JobFactory.create(organization=b)
    client = _client(staff_user("alice", a, perms=("jobs.view_job", "jobs.retry_job")))

    assert client.get(f"{LIST}{theirs.pk}/change/").status_code == 404
    assert client.get(f"{LIST}{theirs.pk}/history/").status_code == 404
    assert client.get(f"{LIST}{theirs.pk}/retry/").status_code == 404
    assert client.get(f"{LIST}not-a-uuid/change/").status_code == 404
    assert client.get(f"{LIST}{JobFactory.create(organization=a).pk}/change/").status_code == 200


def test_a_bulk_action_cannot_reach_another_organizations_job(broker: Any) -> None:
    a, b = OrganizationFactory.create(slug="org-a"), OrganizationFactory.create(slug="org-b")
    theirs = _failed(organization=b)
    client = _client(staff_user("alice", a, perms=("jobs.view_job", "jobs.retry_job")))

    client.post(
        LIST, {"action": "retry_selected", "_selected_action": [str(theirs.pk)], "post": "yes"}
    )

    theirs.refresh_from_db()
    assert theirs.status == JobStatus.FAILED
    assert not JobEvent.objects.filter(job=theirs).exists()


def test_superusers_see_every_organization_and_system_jobs() -> None:
    a = JobFactory.create(organization=OrganizationFactory.create(slug="org-a"))
    system = JobFactory.create(organization=None)

    body = _client(_superuser()).get(LIST).content.decode()

    assert str(a.pk)[:8] in body
    assert str(system.pk)[:8] in body


def test_the_dashboard_and_dead_letters_of_a_staff_user_are_scoped() -> None:
    a, b = OrganizationFactory.create(slug="org-a"), OrganizationFactory.create(slug="org-b")
    _failed(organization=a, error_message="alpha failure", job_type="diagnostics.echo")
    _failed(organization=b, error_message="bravo failure", job_type="tests.count")
    client = _client(staff_user("alice", a, perms=("jobs.view_job",)))

    dashboard = client.get(f"{LIST}dashboard/").content.decode()
    dead = client.get(f"{LIST}dead-letters/").content.decode()

    for body in (dashboard, dead):
        assert "alpha failure" in body
        assert "bravo failure" not in body
    assert 'id="queue-stats"' not in dashboard  # Redis-wide numbers are for superusers


# --- escaping and redaction -----------------------------------------------------------
def test_markup_in_payload_and_error_renders_inert_in_list_detail_and_dashboard(
    broker: Any,
) -> None:
    job = _failed(
        job_type="diagnostics.echo",
        payload={"message": XSS, XSS: "key"},
        result={"echo": XSS},
        error_type="EchoFailure",
        error_message=XSS,
        error_traceback=f"Traceback ...\nEchoFailure: {XSS}",
        progress_message=XSS,
        idempotency_key=XSS,
    )
    client = _client(_superuser())

    pages = {
        "list": client.get(LIST),
        "search": client.get(LIST, {"q": "script"}),
        "detail": client.get(f"{LIST}{job.pk}/change/"),
        "dashboard": client.get(f"{LIST}dashboard/"),
        "dead letters": client.get(f"{LIST}dead-letters/"),
    }
    confirmation = client.get(f"{LIST}{job.pk}/retry/").content.decode()

    for name, response in pages.items():
        body = response.content.decode()
        assert response.status_code == 200, name
        assert "<script>alert(1)" not in body, name
        assert XSS_ESCAPED in body, name
    assert "<script>alert(1)" not in confirmation


def test_secret_looking_payload_and_result_values_are_redacted_on_the_job_page() -> None:
    job = JobFactory.create(
        status=JobStatus.SUCCEEDED,
        payload={"message": "visible", "password": "hunter2", "nested": {"api_key": "k-123"}},
        result={"access_token": "tok-456", "ok": True},
        error_message="earlier attempt: Authorization: Bearer sekrit-789",
        error_type="Boom",
        progress_message="syncing as db_password=prog-secret-1",
    )
    client = _client(_superuser())

    body = client.get(f"{LIST}{job.pk}/change/").content.decode()
    listed = client.get(LIST).content.decode()  # the progress bar's tooltip

    assert "visible" in body
    for secret in ("hunter2", "k-123", "tok-456", "sekrit-789", "prog-secret-1"):
        assert secret not in body
    assert "prog-secret-1" not in listed
    assert "syncing as db_password=[redacted]" in body
    assert "syncing as db_password=[redacted]" in listed


def test_the_job_page_shows_attempts_audit_and_a_timeline(broker: Any) -> None:
    job = _failed()
    job.attempt_set.create(
        number=1, worker_id="host:1:abc", finished_at=timezone.now(), outcome="failed"
    )
    client = _client(_superuser())
    client.post(f"{LIST}{job.pk}/retry/", {"post": "yes"})

    body = client.get(f"{LIST}{job.pk}/change/").content.decode()

    assert "host:1:abc" in body
    assert "attempt 1 started" in body
    assert "attempt 1 failed" in body
    assert "Retried" in body and "by root via admin" in body
    assert 'class="job-timeline"' in body


# --- actions ---------------------------------------------------------------------------------
def test_retry_action_asks_for_confirmation_then_retries_and_reports_skips(broker: Any) -> None:
    org = OrganizationFactory.create(slug="org-a")
    failed = _failed(organization=org)
    succeeded = JobFactory.create(organization=org, status=JobStatus.SUCCEEDED)
    user = staff_user("alice", org, perms=("jobs.view_job", "jobs.retry_job"))
    client = _client(user)
    selected = [str(failed.pk), str(succeeded.pk)]

    confirmation = client.post(LIST, {"action": "retry_selected", "_selected_action": selected})

    body = confirmation.content.decode()
    assert confirmation.status_code == 200
    assert "1 job will be queued again" in body
    assert "only failed or cancelled jobs can be retried" in body
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED  # nothing changed yet

    done = client.post(
        LIST, {"action": "retry_selected", "_selected_action": selected, "post": "yes"}, follow=True
    )

    text = done.content.decode()
    assert "Retried 1 job." in text
    assert "Skipped 1:" in text and str(succeeded.pk)[:8] in text
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED
    event = JobEvent.objects.get(job=failed)
    assert (event.kind, event.via, event.user) == (JobEventKind.RETRIED, "admin", user)
    entry = LogEntry.objects.get(object_id=str(failed.pk))
    assert entry.user == user and entry.change_message == "Retried from the admin."
    assert broker.client.llen(f"{broker.namespace}:default") == 1


def test_cancel_action_cancels_queued_jobs_and_skips_finished_ones(broker: Any) -> None:
    org = OrganizationFactory.create(slug="org-a")
    queued = JobFactory.create(organization=org)
    done = JobFactory.create(organization=org, status=JobStatus.SUCCEEDED)
    client = _client(staff_user("alice", org, perms=("jobs.view_job", "jobs.cancel_job")))

    response = client.post(
        LIST,
        {"action": "cancel_selected", "_selected_action": [queued.pk, done.pk], "post": "yes"},
        follow=True,
    )

    text = response.content.decode()
    assert "Cancelled 1 job." in text
    assert "it already finished (succeeded)" in text
    queued.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED
    assert JobEvent.objects.get(job=queued).kind == JobEventKind.CANCELLED


def test_actions_need_their_custom_permissions(broker: Any) -> None:
    org = OrganizationFactory.create(slug="org-a")
    failed = _failed(organization=org)
    viewer = _client(staff_user("viewer", org, perms=("jobs.view_job",)))

    listing = viewer.get(LIST).content.decode()
    viewer.post(LIST, {"action": "retry_selected", "_selected_action": [failed.pk], "post": "yes"})

    assert "retry_selected" not in listing
    assert "cancel_selected" not in listing
    assert viewer.get(f"{LIST}{failed.pk}/retry/").status_code == 404
    assert viewer.post(f"{LIST}{failed.pk}/retry/", {"post": "yes"}).status_code == 404
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED
    assert 'id="job-retry"' not in viewer.get(f"{LIST}{failed.pk}/change/").content.decode()


def test_the_retry_button_of_the_job_page_confirms_then_retries(broker: Any) -> None:
    job = _failed()
    client = _client(_superuser())

    page = client.get(f"{LIST}{job.pk}/change/").content.decode()
    confirm = client.get(f"{LIST}{job.pk}/retry/")
    done = client.post(f"{LIST}{job.pk}/retry/", {"post": "yes"})

    assert 'id="job-retry"' in page
    assert 'id="confirm-action"' in confirm.content.decode()
    assert done.status_code == 302 and done["Location"].endswith(f"{job.pk}/change/")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


# --- list: search, filters, speed guards --------------------------------------------------------
def test_search_finds_jobs_by_id_idempotency_key_and_error_message() -> None:
    by_id = JobFactory.create()
    by_key = JobFactory.create(idempotency_key="order-42")
    by_error = _failed(error_message="Connection refused by smtp.example.com")
    client = _client(_superuser())

    def found(term: str) -> set[str]:
        body = client.get(LIST, {"q": term}).content.decode()
        return {str(j.pk)[:8] for j in (by_id, by_key, by_error) if str(j.pk)[:8] in body}

    assert found(str(by_id.pk)) == {str(by_id.pk)[:8]}
    assert found("order-42") == {str(by_key.pk)[:8]}
    assert found("smtp.example") == {str(by_error.pk)[:8]}


def test_filters_by_status_type_queue_organization_and_date() -> None:
    org = OrganizationFactory.create(slug="org-a")
    target = _failed(organization=org, job_type="tests.count", queue="email")
    other = JobFactory.create()
    client = _client(_superuser())
    today = timezone.now()

    params: dict[str, Any] = {
        "status__exact": "failed",
        "job_type": "tests.count",
        "queue": "email",
        "organization": str(org.pk),
        "created_at__year": today.year,
        "created_at__month": today.month,
    }
    body = client.get(LIST, params).content.decode()

    assert str(target.pk)[:8] in body
    assert str(other.pk)[:8] not in body


def test_the_list_accepts_every_link_of_its_own_filters_and_date_drill_down() -> None:
    org = OrganizationFactory.create(slug="org-a")
    target = _failed(organization=org)
    client = _client(_superuser())
    today = timezone.now()
    body = client.get(LIST).content.decode()
    # The filter sidebar's and date hierarchy's links, as rendered.
    links = {
        link.replace("&amp;", "&")
        for link in re.findall(r'href="(\?[^"]+)"', body)
        if "=" in link and "_popup" not in link
    }

    assert links, body
    for link in sorted(links):
        assert client.get(f"{LIST}{link}").status_code == 200, link
    for params in (
        {
            "created_at__year": today.year,
            "created_at__month": today.month,
            "created_at__day": today.day,
        },
        {"q": "boom", "o": "-2", "p": "1"},
        {"status__isnull": "False", "organization": "system", "all": ""},
    ):
        assert client.get(LIST, params).status_code == 200, params
    assert str(target.pk)[:8] in client.get(LIST, {"status__exact": "failed"}).content.decode()


@pytest.mark.parametrize(
    "lookup",
    [
        "payload__kwargs__password__startswith",
        "payload__contains",
        "result__token__startswith",
        "error_traceback__contains",
        "error_message__startswith",
        "organization__slug__startswith",
        "idempotency_key__startswith",
    ],
)
def test_undeclared_lookups_are_refused_and_reveal_nothing(lookup: str) -> None:
    org = OrganizationFactory.create(slug="org-a")
    job = _failed(
        organization=org,
        payload={"kwargs": {"password": "hunter2"}},
        result={"token": "hunter2"},
        error_message="password=hunter2",
        error_traceback="ValueError: password=hunter2",
        idempotency_key="hunter2",
    )
    client = _client(staff_user("alice", org, perms=("jobs.view_job",)))

    right = client.get(LIST, {lookup: "hunter"})
    wrong = client.get(LIST, {lookup: "xyz"})

    # Django's answer to a lookup the admin does not allow: 400, the same for any value.
    assert (right.status_code, wrong.status_code) == (400, 400)
    assert right.content == wrong.content
    assert str(job.pk)[:8] not in right.content.decode()


def test_the_list_never_counts_every_row_or_lists_distinct_values() -> None:
    for _ in range(3):
        JobFactory.create()
    client = _client(_superuser())

    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIST, {"status__exact": "queued"})

    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not any("DISTINCT" in s and "JOBS_JOB" in s for s in sql)
    # One count of the filtered list (small, so exact); never a second, full COUNT(*).
    assert sum("COUNT(*)" in s and "JOBS_JOB" in s for s in sql) <= 1
    assert any(s.startswith("EXPLAIN") for s in sql)


def test_the_paginator_uses_the_planner_estimate_above_the_exact_limit(settings: Any) -> None:
    for _ in range(5):
        JobFactory.create()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    settings.JOBS_ADMIN_EXACT_COUNT_LIMIT = 0

    paginator = EstimatedCountPaginator(Job.objects.order_by("-created_at"), 50)

    assert paginator.count > 0
    assert paginator.is_estimate

    settings.JOBS_ADMIN_EXACT_COUNT_LIMIT = 1_000
    exact = EstimatedCountPaginator(Job.objects.order_by("-created_at"), 50)
    assert exact.count == 5
    assert not exact.is_estimate


# --- dashboard ---------------------------------------------------------------------------------
def test_the_dashboard_shows_throughput_backlog_queues_and_updates_itself(broker: Any) -> None:
    org = OrganizationFactory.create(slug="org-a")
    now = timezone.now()
    for i in range(3):
        JobFactory.create(
            organization=org, status=JobStatus.SUCCEEDED, finished_at=now - timedelta(minutes=i)
        )
    _failed(organization=org)
    JobFactory.create(organization=org, status=JobStatus.QUEUED)
    client = _client(_superuser())

    response = client.get(f"{LIST}dashboard/")

    body = response.content.decode()
    assert response.status_code == 200
    assert '<meta http-equiv="refresh"' not in body  # it updates in place (jobs/dashboard.js)
    assert 'src="/static/jobs/dashboard.js"' in body
    assert 'id="dashboard-live" data-window="24h"' in body
    assert 'id="stat-finished-24h">4<' in body
    assert 'id="stat-failed-24h">1<' in body
    assert 'id="stat-failure-rate">25.0 %<' in body
    assert '<svg id="throughput-chart"' in body and "<rect" in body
    assert 'id="queue-stats"' in body and "high_priority" in body
    assert "org-a" in body  # backlog row
    assert "analytics.daily_report" in body  # the scheduler's schedules are listed


@pytest.mark.parametrize(
    ("window", "heading", "finished"),
    [
        ("1h", "per minute, the last hour", 2),
        ("24h", "per minute, the last 24 hours", 3),
        ("7d", "per hour, the last 7 days", 4),
        ("bogus", "per minute, the last 24 hours", 3),
    ],
)
def test_the_dashboard_chart_spans_the_window_asked_for(
    window: str, heading: str, finished: int, broker: Any
) -> None:
    now = timezone.now()
    for ago in (timedelta(minutes=1), timedelta(minutes=30), timedelta(hours=5), timedelta(days=3)):
        JobFactory.create(status=JobStatus.SUCCEEDED, finished_at=now - ago)
    client = _client(_superuser())

    page = client.get(f"{LIST}dashboard/", {"window": window}).content.decode()
    live = client.get(f"{LIST}dashboard/", {"window": window, "fragment": "live"})

    assert heading in page
    assert f"{finished} in all, 0 failed" in page
    assert page.count("<rect x=") >= 1
    fragment = live.content.decode()
    assert live.status_code == 200
    assert fragment.lstrip().startswith('<div class="jobs-dashboard" id="dashboard-live"')
    assert "<html" not in fragment and heading in fragment
    assert 'id="stat-finished-24h">3<' in fragment  # the cards always count 24 hours


def test_the_admin_index_links_to_the_dashboard_and_dead_letters() -> None:
    body = _client(_superuser()).get("/admin/").content.decode()

    assert 'href="/admin/jobs/job/dashboard/"' in body
    assert 'href="/admin/jobs/job/dead-letters/"' in body


def test_the_list_does_not_read_payloads_results_or_tracebacks() -> None:
    JobFactory.create(payload={"message": "x" * 10_000})
    client = _client(_superuser())

    with CaptureQueriesContext(connection) as queries:
        client.get(LIST)

    [listing] = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "jobs_job"."id"') and "ORDER BY" in q["sql"]
    ]
    assert '"jobs_job"."payload"' not in listing
    assert '"jobs_job"."error_traceback"' not in listing


def test_search_matches_error_text_as_shown_so_it_cannot_probe_a_redacted_secret() -> None:
    leaky = _failed(error_message="SMTP login refused: password=hunter2-secret for mailer")
    client = _client(_superuser())

    def found(term: str) -> bool:
        return str(leaky.pk)[:8] in client.get(LIST, {"q": term}).content.decode()

    page = client.get(f"{LIST}{leaky.pk}/change/").content.decode()
    assert "hunter2" not in page, "the page shows the secret redacted"
    assert found("login refused"), "what the page shows is searchable"
    assert not found("hunter2"), "a term only inside the redacted secret finds nothing"
    assert not found("password=hunter"), "nor does a guess at its beginning"
