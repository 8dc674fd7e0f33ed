"""Dead letters with a real worker: grouped from the ledger, replayed, purged from Redis."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import Job, JobEvent, JobEventKind, JobStatus
from jobs.selectors.dead_letters import (
    dead_letter_group,
    dead_letter_groups,
    dead_letter_ids,
    dead_messages_in_redis,
)
from jobs.services import job_submit
from jobs.services.dead_letters import (
    dead_letter_group_replay,
    dead_letters_purge,
    dead_letters_purge_all,
)
from tenants.models import Organization
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _fail_once(organization: Organization | None, message: str = "m") -> Job:
    """A job that fails its first attempt and has no retries: it is dead-lettered."""
    return job_submit(
        job_type="diagnostics.echo",
        payload={"message": message, "fail_times": 1},
        organization=organization,
        max_retries=0,
    ).job


def _status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def _scope(*orgs: Organization) -> Any:
    return Organization.objects.filter(pk__in=[o.pk for o in orgs])


def test_failed_jobs_are_grouped_replayed_with_a_fresh_budget_and_succeed(
    worker: Any, wait_for: Any
) -> None:
    org = OrganizationFactory.create(slug="org-a")
    jobs = [_fail_once(org, f"m{i}") for i in range(2)]
    wait_for(lambda: all(_status(j) == JobStatus.FAILED for j in jobs), timeout=30)
    wait_for(lambda: {str(j.pk) for j in jobs} <= set(dead_messages_in_redis()))

    [group] = dead_letter_groups(organizations=_scope(org), count_in_redis=True)
    assert (group.job_type, group.error_type, group.count, group.in_redis) == (
        "diagnostics.echo",
        "EchoFailure",
        2,
        2,
    )
    assert "<n>" in group.message

    result = dead_letter_group_replay(group=group, organizations=_scope(org), via="cli")

    assert sorted(result.job_ids) == sorted(str(j.pk) for j in jobs)
    assert result.skipped == 0
    assert not {str(j.pk) for j in jobs} & set(dead_messages_in_redis())
    wait_for(lambda: all(_status(j) == JobStatus.SUCCEEDED for j in jobs), timeout=30)
    assert [j.attempts for j in jobs] == [2, 2]
    assert JobEvent.objects.filter(kind=JobEventKind.REPLAYED, via="cli").count() == 2
    assert dead_letter_groups(organizations=_scope(org)) == []


def test_purge_removes_only_the_callers_dead_letters_from_redis_and_keeps_history(
    worker: Any, wait_for: Any
) -> None:
    a, b = OrganizationFactory.create(slug="org-a"), OrganizationFactory.create(slug="org-b")
    mine, theirs = _fail_once(a), _fail_once(b)
    wait_for(lambda: {str(mine.pk), str(theirs.pk)} <= set(dead_messages_in_redis()), timeout=30)

    result = dead_letters_purge(job_ids=dead_letter_ids(organization=a), via="cli")

    assert (result.redis_removed, result.job_ids) == (1, [str(mine.pk)])
    left = set(dead_messages_in_redis())
    assert str(mine.pk) not in left and str(theirs.pk) in left
    assert _status(mine) == JobStatus.FAILED  # the ledger keeps the history
    assert JobEvent.objects.get(job=mine).kind == JobEventKind.PURGED
    assert not JobEvent.objects.filter(job=theirs).exists()

    everything = dead_letters_purge_all()

    assert everything.redis_removed == 1
    assert dead_messages_in_redis() == {}


def test_the_dead_letters_page_replays_a_group_after_confirmation(
    worker: Any, wait_for: Any
) -> None:
    job = _fail_once(None)
    wait_for(lambda: _status(job) == JobStatus.FAILED, timeout=30)
    [group] = dead_letter_groups(organizations=None)
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    url = "/admin/jobs/job/dead-letters/"

    listing = client.get(url).content.decode()
    confirm = client.post(url, {"operation": "replay", "group": group.key})
    done = client.post(url, {"operation": "replay", "group": group.key, "post": "yes"}, follow=True)

    assert "diagnostics.echo" in listing and "EchoFailure" in listing
    assert "Replay 1 failed job" in confirm.content.decode()
    assert "Replayed 1 job(s)." in done.content.decode()
    wait_for(lambda: _status(job) == JobStatus.SUCCEEDED, timeout=30)
    assert dead_letter_group(key=group.key, organizations=None) is None


def test_unknown_dead_letter_operations_and_missing_permissions_are_refused(broker: Any) -> None:
    org = OrganizationFactory.create(slug="org-a")
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.memberships.create(organization=org)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(user)
    url = "/admin/jobs/job/dead-letters/"

    unknown = client.post(url, {"operation": "explode"})
    purge_all = client.post(url, {"operation": "purge_all", "post": "yes"})

    assert unknown.status_code == 400
    assert "Unknown operation 'explode'" in unknown.content.decode()
    assert purge_all.status_code == 403
