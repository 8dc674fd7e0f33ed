"""Every error status of the API answers the one documented JSON shape."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.api.errors import api_exception_handler
from jobs.errors import (
    BrokerUnavailable,
    OrganizationInactive,
    QuotaExceeded,
    RateLimited,
)
from jobs.models import Job
from tenants import key_cache
from tenants.models import Organization, Role
from tenants.services import api_key_revoke, membership_ensure
from tests.factories import OrganizationFactory
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ECHO = {"type": "diagnostics.echo", "payload": {"message": "hi"}}


def _assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "code", "message", "fields", "index"}
    assert error["status"] == status
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_a_request_without_a_key_answers_401_with_a_bearer_challenge(anonymous: APIClient) -> None:
    response = anonymous.get("/api/v1/jobs/")

    _assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer tbx_nope_nothing", "Bearer not-a-key", "Token ", "Bearer a b"],
)
def test_an_unknown_or_malformed_key_answers_401(anonymous: APIClient, header: str) -> None:
    anonymous.credentials(HTTP_AUTHORIZATION=header)

    _assert_error(anonymous.get("/api/v1/jobs/"), 401)


def test_a_revoked_key_answers_401_and_the_token_keyword_works(tenant_a: Tenant) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tenant_a.raw_key}")
    assert client.get("/api/v1/jobs/").status_code == 200

    api_key_revoke(api_key=tenant_a.api_key)

    _assert_error(client.get("/api/v1/jobs/"), 401, "authentication_failed")


@pytest.mark.parametrize("how", ["deactivated", "deleted"])
def test_the_key_of_a_user_deactivated_or_deleted_outside_the_services_answers_401(
    tenant_a: Tenant, how: str
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.raw_key}")
    assert client.get("/api/v1/jobs/").status_code == 200  # the key is cached now
    user = tenant_a.api_key.membership.user
    if how == "deactivated":  # as the admin's user page does
        user.is_active = False
        user.save()
    else:
        user.delete()

    _assert_error(client.get("/api/v1/jobs/"), 401, "authentication_failed")


def test_a_reactivated_users_key_works_again_at_once(tenant_a: Tenant) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.raw_key}")
    user = tenant_a.api_key.membership.user
    user.is_active = False
    user.save()
    _assert_error(client.get("/api/v1/jobs/"), 401, "authentication_failed")

    user.is_active = True
    user.save()

    assert client.get("/api/v1/jobs/").status_code == 200


def test_a_login_does_not_make_processes_forget_their_keys(tenant_a: Tenant) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.raw_key}")
    assert client.get("/api/v1/jobs/").status_code == 200
    generation = key_cache.generation()
    user = tenant_a.api_key.membership.user
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])

    assert key_cache.generation() == generation
    assert client.get("/api/v1/jobs/").status_code == 200


def test_an_unknown_job_and_a_malformed_id_answer_404(tenant_a: Tenant) -> None:
    _assert_error(tenant_a.client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/"), 404)
    _assert_error(tenant_a.client.get("/api/v1/jobs/not-a-uuid/"), 404, "job_not_found")
    _assert_error(tenant_a.client.get("/api/v1/no-such-endpoint/"), 404, "not_found")


def test_a_method_the_endpoint_does_not_have_answers_405(tenant_a: Tenant) -> None:
    response = tenant_a.client.delete("/api/v1/jobs/")

    _assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_a_transition_the_status_does_not_allow_answers_409(tenant_a: Tenant) -> None:
    job_id = tenant_a.client.post("/api/v1/jobs/", ECHO, format="json").json()["id"]

    _assert_error(tenant_a.client.post(f"/api/v1/jobs/{job_id}/retry/"), 409, "invalid_transition")


@override_settings(API_MAX_BODY_BYTES=2048)
def test_a_body_over_the_limit_answers_413_and_creates_nothing(tenant_a: Tenant) -> None:
    body = {"type": "diagnostics.echo", "payload": {"message": "x" * 4096}}

    error = _assert_error(
        tenant_a.client.post("/api/v1/jobs/", body, format="json"), 413, "body_too_large"
    )

    assert "API_MAX_BODY_BYTES" in error["message"]
    assert Job.objects.count() == 0


def test_a_body_that_is_not_json_answers_415_and_malformed_json_400(tenant_a: Tenant) -> None:
    form = tenant_a.client.post("/api/v1/jobs/", {"type": "diagnostics.echo"})
    broken = tenant_a.client.post(
        "/api/v1/jobs/", data='{"type": ', content_type="application/json"
    )
    nan = tenant_a.client.post(
        "/api/v1/jobs/",
        data='{"type": "diagnostics.echo", "priority": NaN}',
        content_type="application/json",
    )

    _assert_error(form, 415, "unsupported_media_type")
    _assert_error(broken, 400, "parse_error")
    _assert_error(nan, 400, "parse_error")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"),
    [
        (RateLimited("Too fast.", retry_after_seconds=12), 429, "rate_limited", "12"),
        (QuotaExceeded("Quota used.", retry_after_seconds=3600), 429, "quota_exceeded", "3600"),
        (RateLimited("Too fast."), 429, "rate_limited", "60"),
        (OrganizationInactive("Inactive."), 403, "organization_inactive", None),
        (BrokerUnavailable("Redis is down."), 503, "broker_unavailable", "5"),
    ],
)
def test_refused_submissions_map_to_their_status_with_retry_after(
    exc: Exception, status: int, code: str, retry_after: str | None
) -> None:
    response = api_exception_handler(exc, {"view": None})

    assert response is not None
    assert response.status_code == status
    assert response.data["error"]["code"] == code
    assert response.data["error"]["status"] == status
    assert response.headers.get("Retry-After") == retry_after


def test_a_staff_session_chooses_its_organization_with_x_organization(
    tenant_a: Tenant, tenant_b: Tenant
) -> None:
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    membership_ensure(user=staff, organization=tenant_a.organization, role=Role.ADMIN)
    other: Organization = OrganizationFactory.create(slug="school-c")
    membership_ensure(user=staff, organization=other, role=Role.ADMIN)
    a_job = tenant_a.client.post("/api/v1/jobs/", ECHO, format="json").json()["id"]
    client = APIClient()
    client.force_login(staff)

    ambiguous = client.get("/api/v1/jobs/")
    chosen = client.get("/api/v1/jobs/", HTTP_X_ORGANIZATION="school-a")
    elsewhere = client.get("/api/v1/jobs/", HTTP_X_ORGANIZATION="school-c")
    not_mine = client.get("/api/v1/jobs/", HTTP_X_ORGANIZATION="school-b")

    assert _assert_error(ambiguous, 400)["fields"].keys() == {"X-Organization"}
    assert [j["id"] for j in chosen.json()["results"]] == [a_job]
    assert elsewhere.json()["results"] == []
    _assert_error(not_mine, 403, "permission_denied")


def test_a_session_user_who_is_not_staff_gets_403(tenant_a: Tenant) -> None:
    user = get_user_model().objects.create_user("plain", password="pw")
    membership_ensure(user=user, organization=tenant_a.organization, role=Role.MEMBER)
    client = APIClient()
    client.force_login(user)

    _assert_error(client.get("/api/v1/jobs/"), 403, "permission_denied")


def test_nul_characters_postgres_cannot_store_answer_400_not_500(tenant_a: Tenant) -> None:
    body = {"type": "diagnostics.echo", "payload": {"message": "a\u0000b"}}
    keyed = {**ECHO, "idempotency_key": "a\u0000b"}
    nested = {"task_type": "diagnostics.echo", "task_data": {"message": "x", "a\u0000": 1}}

    _assert_error(tenant_a.client.post("/api/v1/jobs/", body, format="json"), 400)
    _assert_error(tenant_a.client.post("/api/v1/jobs/", keyed, format="json"), 400)
    refused = _assert_error(
        tenant_a.client.post("/api/v1/tasks/submit", nested, format="json"), 400
    )
    assert "task_data" in refused["fields"]
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_submission_after_the_rate_limit_gets_429_with_retry_after(broker: Any) -> None:
    from tests.integration.api.conftest import make_tenant

    fast = make_tenant("fast", max_submissions_per_minute=3)
    other = make_tenant("other", max_submissions_per_minute=3)
    body = {"type": "diagnostics.echo", "payload": {"message": "m"}}
    for _ in range(3):
        assert fast.client.post("/api/v1/jobs/", body, format="json").status_code == 201

    refused = fast.client.post("/api/v1/jobs/", body, format="json")

    _assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert other.client.post("/api/v1/jobs/", body, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_a_submission_over_the_monthly_quota_gets_quota_exceeded(broker: Any) -> None:
    from tests.integration.api.conftest import make_tenant

    capped = make_tenant("capped", monthly_job_quota=1)
    body = {"type": "diagnostics.echo", "payload": {"message": "m"}}
    assert capped.client.post("/api/v1/jobs/", body, format="json").status_code == 201

    refused = capped.client.post("/api/v1/jobs/", body, format="json")

    _assert_error(refused, 429, "quota_exceeded")
    assert int(refused.headers["Retry-After"]) > 0


@pytest.mark.django_db(transaction=True)
def test_an_inactive_organization_gets_403_when_it_submits(broker: Any) -> None:
    from tests.integration.api.conftest import make_tenant

    dormant = make_tenant("dormant", is_active=False)
    body = {"type": "diagnostics.echo", "payload": {"message": "m"}}

    _assert_error(
        dormant.client.post("/api/v1/jobs/", body, format="json"), 403, "organization_inactive"
    )
