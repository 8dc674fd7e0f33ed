"""The tenants admin and the report admins are scoped to the staff user's organizations."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import DailyReport
from tenants.models import ApiKey, Membership, Organization, Role
from tenants.services import api_key_authenticate, api_key_create
from tests.factories import OrganizationFactory, staff_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TENANT_PERMS = (
    "tenants.view_organization",
    "tenants.change_organization",
    "tenants.view_membership",
    "tenants.change_membership",
    "tenants.view_apikey",
    "tenants.change_apikey",
)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _orgs() -> tuple[Organization, Organization]:
    return (
        OrganizationFactory.create(slug="alpha-school", max_submissions_per_minute=600),
        OrganizationFactory.create(slug="bravo-school", max_submissions_per_minute=600),
    )


def _key(organization: Organization, username: str) -> tuple[ApiKey, str]:
    user = User.objects.create_user(username=username)
    membership = Membership.objects.create(user=user, organization=organization, role=Role.MEMBER)
    issued = api_key_create(membership=membership, name=f"{username}-key")
    return issued.api_key, issued.raw


def test_the_daily_report_organization_filter_lists_only_the_users_organizations() -> None:
    a, b = _orgs()
    DailyReport.objects.create(organization=a, day=date(2026, 1, 5), total_jobs=3)
    DailyReport.objects.create(organization=b, day=date(2026, 1, 5), total_jobs=4)
    client = _client(staff_user("alice", a, perms=("jobs.view_dailyreport",)))

    body = client.get("/admin/jobs/dailyreport/").content.decode()

    assert "alpha-school" in body
    assert "bravo-school" not in body  # neither a row nor a filter choice


def test_staff_see_and_change_only_their_organizations_in_the_tenants_admin() -> None:
    a, b = _orgs()
    client = _client(staff_user("alice", a, perms=TENANT_PERMS))

    listing = client.get("/admin/tenants/organization/").content.decode()
    theirs = client.get(f"/admin/tenants/organization/{b.pk}/change/")
    edit = client.post(
        f"/admin/tenants/organization/{b.pk}/change/",
        {
            "slug": b.slug,
            "name": b.name,
            "is_active": "",
            "max_submissions_per_minute": 1,
            "max_concurrent_jobs": 1,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )

    assert "alpha-school" in listing and "bravo-school" not in listing
    assert theirs.status_code == 302  # "does not exist", like an unknown id
    assert edit.status_code == 302
    b.refresh_from_db()
    assert (b.is_active, b.max_submissions_per_minute) == (True, 600)


def test_staff_cannot_see_another_organizations_memberships_or_move_one_there() -> None:
    a, b = _orgs()
    alice = staff_user("alice", a, perms=TENANT_PERMS)
    _key(b, "bob")
    mine = Membership.objects.get(user=alice, organization=a)
    client = _client(alice)

    listing = client.get("/admin/tenants/membership/").content.decode()
    moved = client.post(
        f"/admin/tenants/membership/{mine.pk}/change/",
        {"user": alice.pk, "organization": b.pk, "role": Role.OWNER},
    )

    assert "bob" not in listing and "bravo-school" not in listing
    assert moved.status_code == 200  # the form again, with an error
    assert "Select a valid choice" in moved.content.decode()
    mine.refresh_from_db()
    assert (mine.organization, mine.role) == (a, Role.MEMBER)


def test_staff_cannot_see_or_revoke_another_organizations_api_keys() -> None:
    a, b = _orgs()
    client = _client(staff_user("alice", a, perms=TENANT_PERMS))
    theirs, _ = _key(b, "bob")

    listing = client.get("/admin/tenants/apikey/").content.decode()
    client.post(
        "/admin/tenants/apikey/",
        {"action": "revoke_keys", "_selected_action": [theirs.pk]},
    )

    assert "bob-key" not in listing and theirs.prefix not in listing
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_autocomplete_offers_only_the_users_organizations() -> None:
    a, _ = _orgs()
    client = _client(staff_user("alice", a, perms=TENANT_PERMS))

    response = client.get(
        "/admin/autocomplete/",
        {
            "app_label": "tenants",
            "model_name": "membership",
            "field_name": "organization",
            "term": "school",
        },
    )

    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["alpha-school"]


def test_a_superuser_still_sees_every_organization() -> None:
    _orgs()
    client = _client(User.objects.create_superuser("root", "root@example.com", "pw"))

    listing = client.get("/admin/tenants/organization/").content.decode()
    filters = client.get("/admin/tenants/membership/").content.decode()

    assert "alpha-school" in listing and "bravo-school" in listing
    assert "alpha-school" in filters and "bravo-school" in filters


def test_revoking_a_key_in_the_admin_refuses_it_at_once(broker: Any) -> None:
    a, _ = _orgs()
    api_key, raw = _key(a, "carol")
    assert api_key_authenticate(raw=raw) is not None  # now trusted by this process
    client = _client(staff_user("alice", a, perms=TENANT_PERMS))

    response = client.post(
        "/admin/tenants/apikey/", {"action": "revoke_keys", "_selected_action": [api_key.pk]}
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key_authenticate(raw=raw) is None


def test_the_change_form_cannot_write_the_revocation_time_directly() -> None:
    a, _ = _orgs()
    api_key, _ = _key(a, "carol")
    client = _client(staff_user("alice", a, perms=TENANT_PERMS))

    client.post(
        f"/admin/tenants/apikey/{api_key.pk}/change/",
        {"name": "renamed", "revoked_at_0": "2026-01-01", "revoked_at_1": "00:00:00"},
    )

    api_key.refresh_from_db()
    assert api_key.name == "renamed"
    assert api_key.revoked_at is None
