"""Dead letters over the API: grouped, paged, replayed and purged, scoped, charged and audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.selectors.dead_letters import dead_messages_in_redis
from tenants.models import ApiScope, Organization
from tests.factories import JobFactory
from tests.integration.api.conftest import Tenant, key_client, make_tenant

# Only the test with a worker needs commits (messages are sent on commit); the rest roll back.
pytestmark = [pytest.mark.integration, pytest.mark.django_db]

WRITE = ApiScope.DEAD_LETTERS_WRITE.value
READ = ApiScope.JOBS_READ.value


def _dead(
    organization: Organization, n: int, *, error: str = "Boom", minutes_ago: int = 0
) -> list[Job]:
    """``n`` dead letters written straight into the ledger (no message in Redis)."""
    now = timezone.now() - timedelta(minutes=minutes_ago)
    return [
        JobFactory.create(
            organization=organization,
            status=JobStatus.FAILED,
            attempts=1,
            max_retries=0,
            error_type=error,
            error_message=f"{error} on item {i} (password=hunter2)",
            finished_at=now - timedelta(seconds=i),
            dead_lettered_at=now - timedelta(seconds=i),
        )
        for i in range(n)
    ]


def _fail_once(tenant: Tenant, message: str) -> str:
    body = {"type": "diagnostics.echo", "payload": {"message": message, "fail_times": 1}}
    response = tenant.client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.content
    Job.objects.filter(pk=response.json()["id"]).update(max_retries=0)
    return str(response.json()["id"])


@pytest.mark.django_db(transaction=True)
def test_groups_count_first_and_last_failure_and_what_redis_still_keeps_then_replay_and_purge(
    worker: Any, wait_for: Any
) -> None:
    tenant = make_tenant("school")
    writer, raw = key_client(tenant, READ, WRITE)
    # max_retries is set after submission, so the first attempt may already retry once:
    # the job fails for good on whichever attempt finds it with no budget left.
    ids = [
        str(
            JobFactory.create(
                organization=tenant.organization,
                payload={"message": f"m{i}", "fail_times": 1},
                max_retries=0,
            ).pk
        )
        for i in range(2)
    ]
    from jobs.services.dispatch import jobs_send
    from jobs.services.messages import job_message

    jobs_send([(job_message(Job.objects.get(pk=i)), None) for i in ids])
    wait_for(lambda: set(ids) <= set(dead_messages_in_redis()), timeout=30)

    listed = tenant.client.get("/api/v1/dead-letters/")
    assert listed.status_code == 200, listed.content
    [group] = listed.json()["results"]
    assert (group["type"], group["error_type"], group["count"], group["still_in_redis"]) == (
        "diagnostics.echo",
        "EchoFailure",
        2,
        2,
    )
    failed = Job.objects.filter(pk__in=ids).order_by("finished_at")
    assert group["first_failed_at"] <= group["last_failed_at"]
    first = failed[0].finished_at
    assert first is not None
    assert group["first_failed_at"].startswith(first.date().isoformat())

    replayed = writer.post(
        f"/api/v1/dead-letters/{group['id']}/replay/", {"job_ids": [ids[0]]}, format="json"
    )
    assert replayed.status_code == 200, replayed.content
    assert replayed.json() == {
        "action": "replay",
        "done": 1,
        "skipped": 0,
        "redis_removed": 1,
        "job_ids": [ids[0]],
    }
    wait_for(lambda: Job.objects.get(pk=ids[0]).status == JobStatus.SUCCEEDED, timeout=30)
    event = JobEvent.objects.get(job_id=ids[0], kind=JobEventKind.REPLAYED)
    assert (event.via, event.detail["api_key"]) == ("api", "tbx_" + raw.split("_")[1])
    assert event.user == tenant.api_key.membership.user

    purged = writer.post(f"/api/v1/dead-letters/{group['id']}/purge/", {}, format="json")
    assert purged.json() == {
        "action": "purge",
        "done": 1,
        "skipped": 0,
        "redis_removed": 1,
        "job_ids": [ids[1]],
    }
    assert ids[1] not in dead_messages_in_redis()
    event = JobEvent.objects.get(job_id=ids[1], kind=JobEventKind.PURGED)
    assert event.detail["api_key"] == "tbx_" + raw.split("_")[1]
    assert Job.objects.get(pk=ids[1]).status == JobStatus.FAILED  # history kept
    assert tenant.client.get("/api/v1/dead-letters/").json() == {"results": []}


def test_a_groups_jobs_come_a_page_at_a_time_newest_first_redacted(broker: Any) -> None:
    tenant = make_tenant("school")
    jobs = _dead(tenant.organization, 5)
    [group] = tenant.client.get("/api/v1/dead-letters/").json()["results"]
    assert group["count"] == 5 and group["still_in_redis"] == 0
    assert "hunter2" not in str(group)

    seen: list[str] = []
    url = f"/api/v1/dead-letters/{group['id']}/?page_size=2"
    while url:
        page = tenant.client.get(url)
        assert page.status_code == 200, page.content
        assert page.json()["group"]["id"] == group["id"]
        assert "hunter2" not in page.content.decode()
        seen.extend(job["id"] for job in page.json()["results"])
        url = page.json()["next"]
    assert seen == [str(job.pk) for job in jobs]  # dead-lettered newest first


def test_another_organizations_group_answers_exactly_like_an_unknown_one(broker: Any) -> None:
    a, b = make_tenant("school-a"), make_tenant("school-b")
    writer_a, _ = key_client(a, READ, WRITE)
    theirs = _dead(b.organization, 2, error="Secret")
    [group] = b.client.get("/api/v1/dead-letters/").json()["results"]

    assert a.client.get("/api/v1/dead-letters/").json() == {"results": []}
    for suffix, method in (("", "get"), ("replay/", "post"), ("purge/", "post")):
        answers = [
            getattr(writer_a, method)(f"/api/v1/dead-letters/{gid}/{suffix}", format="json")
            for gid in (group["id"], "0123456789abcdef", "not-a-group")
        ]
        assert {r.status_code for r in answers} == {404}, suffix
        assert answers[0].content == answers[1].content == answers[2].content, suffix
        assert answers[0].json()["error"]["code"] == "dead_letter_group_not_found"
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in theirs]).values_list("status", flat=True)
    ) == {JobStatus.FAILED}
    assert not JobEvent.objects.exists()


def test_ids_of_another_organization_in_a_subset_are_skipped_untouched(broker: Any) -> None:
    a, b = make_tenant("school-a"), make_tenant("school-b")
    writer_a, _ = key_client(a, READ, WRITE)
    mine = _dead(a.organization, 1)
    theirs = _dead(b.organization, 1)  # the same group id: same type, error and message shape
    [group] = a.client.get("/api/v1/dead-letters/").json()["results"]

    answer = writer_a.post(
        f"/api/v1/dead-letters/{group['id']}/purge/",
        {"job_ids": [str(mine[0].pk), str(theirs[0].pk)]},
        format="json",
    )

    assert (answer.json()["done"], answer.json()["skipped"]) == (1, 1)
    assert Job.objects.get(pk=theirs[0].pk).dead_lettered_at is not None
    assert not JobEvent.objects.filter(job_id=theirs[0].pk).exists()


def test_a_read_only_key_may_list_but_not_replay_or_purge(broker: Any) -> None:
    tenant = make_tenant("school")
    reader, _ = key_client(tenant, READ)
    _dead(tenant.organization, 1)
    [group] = reader.get("/api/v1/dead-letters/").json()["results"]

    for action in ("replay", "purge"):
        refused = reader.post(f"/api/v1/dead-letters/{group['id']}/{action}/", format="json")
        assert refused.status_code == 403, refused.content
        assert refused.json()["error"]["code"] == "missing_scope"
        assert refused.json()["error"]["required_scope"] == "dead_letters:write"
    # Today's keys (jobs:read, jobs:write) may not either: replay is a new power.
    assert tenant.client.post(f"/api/v1/dead-letters/{group['id']}/replay/").status_code == 403
    assert Job.objects.get().dead_lettered_at is not None
    assert not JobEvent.objects.exists()


def test_a_replay_costs_one_submission_per_job_and_is_refused_whole_over_the_limit(
    broker: Any,
) -> None:
    tenant = make_tenant("slow", max_submissions_per_minute=3)
    writer, _ = key_client(tenant, READ, WRITE, "jobs:write")
    jobs = _dead(tenant.organization, 3)
    [group] = tenant.client.get("/api/v1/dead-letters/").json()["results"]
    url = f"/api/v1/dead-letters/{group['id']}/replay/"

    assert writer.post(url, {"job_ids": [str(jobs[0].pk)]}, format="json").status_code == 200
    echo = {"type": "diagnostics.echo", "payload": {"message": "x"}}
    assert writer.post("/api/v1/jobs/", echo, format="json").status_code == 201
    # One submission is left this minute; the group's two remaining dead letters need two.
    refused = writer.post(url, format="json")

    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert Job.objects.filter(pk__in=[j.pk for j in jobs[1:]], status=JobStatus.FAILED).count() == 2
    assert JobEvent.objects.filter(kind=JobEventKind.REPLAYED).count() == 1


def test_a_replay_with_the_quota_used_up_gets_429_and_changes_nothing(broker: Any) -> None:
    tenant = make_tenant("capped", monthly_job_quota=1)
    writer, _ = key_client(tenant, READ, WRITE, "jobs:write")
    assert (
        writer.post(
            "/api/v1/jobs/",
            {"type": "diagnostics.echo", "payload": {"message": "x"}},
            format="json",
        ).status_code
        == 201
    )
    _dead(tenant.organization, 1)
    [group] = tenant.client.get("/api/v1/dead-letters/").json()["results"]

    refused = writer.post(f"/api/v1/dead-letters/{group['id']}/replay/", format="json")

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert not JobEvent.objects.exists()


def test_a_bad_job_ids_subset_gets_400_naming_the_field(broker: Any) -> None:
    tenant = make_tenant("school")
    writer, _ = key_client(tenant, READ, WRITE)
    _dead(tenant.organization, 1)
    [group] = tenant.client.get("/api/v1/dead-letters/").json()["results"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"job_ids": "all"}, "job_ids"),
        ({"job_ids": []}, "job_ids"),
        ({"job_ids": ["not-a-uuid"]}, "job_ids.0"),
        ({"job_ids": ["00000000-0000-0000-0000-000000000000"] * 1001}, "job_ids"),
    ]

    for body, field in cases:
        answer = writer.post(f"/api/v1/dead-letters/{group['id']}/purge/", body, format="json")
        assert answer.status_code == 400, answer.content
        assert field in answer.json()["error"]["fields"], (body, answer.content)
    assert Job.objects.get().dead_lettered_at is not None
