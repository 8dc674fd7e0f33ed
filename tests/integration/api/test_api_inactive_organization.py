"""A deactivated organization can do nothing through the API: 403 on every endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import Job, JobEvent, JobStatus
from tenants.models import Organization
from tests.factories import JobFactory, OrganizationFactory, staff_user
from tests.integration.api.conftest import Tenant, make_tenant
from tests.integration.api.openapi import api_operations

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET_PAYLOAD = "payload-of-a-dormant-school"
SECRET_RESULT = "result-of-a-dormant-school"


def _failed_job(organization: Organization) -> Job:
    now = timezone.now()
    return JobFactory.create(
        organization=organization,
        status=JobStatus.FAILED,
        payload={"message": SECRET_PAYLOAD},
        result={"echo": SECRET_RESULT},
        attempts=1,
        finished_at=now,
        dead_lettered_at=now,
    )


def _assert_refused_everywhere(client: APIClient, job: Job, **extra: Any) -> None:
    for operation in api_operations():
        url = operation.url({name: str(job.pk) for name in operation.path_params})
        response = operation.call(client, url, **extra)
        where = f"{operation.method.upper()} {operation.path}"
        assert response.status_code == 403, f"{where}: {response.status_code}"
        body = response.content.decode()
        assert response.json()["error"]["code"] == "organization_inactive", f"{where}: {body}"
        assert SECRET_PAYLOAD not in body and SECRET_RESULT not in body, where
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED  # neither cancelled nor retried
    assert not JobEvent.objects.exists()
    assert Job.objects.count() == 1  # nothing submitted


def test_an_inactive_organizations_key_gets_403_on_every_endpoint(broker: Any) -> None:
    dormant: Tenant = make_tenant("dormant")
    job = _failed_job(dormant.organization)
    Organization.objects.filter(pk=dormant.organization.pk).update(is_active=False)

    _assert_refused_everywhere(dormant.client, job)

    assert broker.client.dbsize() == 0  # no message was sent (a retry would send one)


@pytest.mark.parametrize("superuser", [False, True])
def test_a_staff_session_choosing_an_inactive_organization_gets_403_everywhere(
    broker: Any, superuser: bool
) -> None:
    dormant = OrganizationFactory.create(slug="dormant", is_active=False)
    job = _failed_job(dormant)
    if superuser:
        user = User.objects.create_superuser("root", "root@example.com", "pw")
    else:
        user = staff_user("alice", dormant, OrganizationFactory.create(slug="awake"))
    client = APIClient()
    client.force_login(user)

    _assert_refused_everywhere(client, job, HTTP_X_ORGANIZATION="dormant")


def test_a_staff_member_of_one_inactive_organization_is_refused_without_the_header(
    broker: Any,
) -> None:
    dormant = OrganizationFactory.create(slug="dormant", is_active=False)
    job = _failed_job(dormant)
    client = APIClient()
    client.force_login(staff_user("alice", dormant))

    _assert_refused_everywhere(client, job)
