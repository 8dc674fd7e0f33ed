"""A revocation, or a deactivation, reaches every web process before it returns.

The web server (gunicorn, its own process) has just trusted a key from its
cache; the change is made in another process (this test's, or a command);
the very next request to the server is refused.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenants.services import api_key_revoke
from tests.e2e.conftest import ManagedProcess
from tests.integration.api.conftest import Tenant, make_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def served(broker: Any, start_web: Any) -> Any:
    """A tenant, and an HTTP client with its key whose server already trusts that key."""
    tenant = make_tenant("served-school")
    # A long cache: the change must reach the server, not wait for its cache to expire.
    web = start_web(API_KEY_CACHE_SECONDS="300")
    client = httpx.Client(
        base_url=web.url, headers={"Authorization": f"Bearer {tenant.raw_key}"}, timeout=10
    )
    for _ in range(2):  # the first looks the key up, the second is served from the cache
        assert client.get("/api/v1/jobs/").status_code == 200
    yield tenant, client
    client.close()


def _admin() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_a_key_revoked_through_the_service_is_refused_by_the_next_request(
    served: tuple[Tenant, httpx.Client],
) -> None:
    tenant, client = served

    api_key_revoke(api_key=tenant.api_key)

    response = client.get("/api/v1/jobs/")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_key_revoked_in_the_admin_is_refused_by_the_next_request(
    served: tuple[Tenant, httpx.Client],
) -> None:
    tenant, client = served

    revoked = _admin().post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [tenant.api_key.pk]}
    )

    assert revoked.status_code == 302
    assert client.get("/api/v1/jobs/").status_code == 401


def test_a_key_revoked_with_the_command_is_refused_by_the_next_request(
    served: tuple[Tenant, httpx.Client], start_command: Any
) -> None:
    tenant, client = served

    command: ManagedProcess = start_command("revokeapikey", f"tbx_{tenant.api_key.prefix}")

    assert command.proc.wait(timeout=60) == 0, command.output()
    assert client.get("/api/v1/jobs/").status_code == 401


def test_an_organization_deactivated_in_the_admin_is_refused_by_the_next_request(
    served: tuple[Tenant, httpx.Client],
) -> None:
    tenant, client = served
    org = tenant.organization

    saved = _admin().post(
        f"/admin/tenants/organization/{org.pk}/change/",
        {
            "slug": org.slug,
            "name": org.name,
            "max_submissions_per_minute": org.max_submissions_per_minute,
            "max_concurrent_jobs": org.max_concurrent_jobs,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },  # is_active left out: unchecked
    )

    assert saved.status_code == 302, saved.content
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "organization_inactive"
